import copy
import importlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cds_mm.models.heads import projectors
from cds_mm.models.heads.projectors import MLPProjector, SepConvProjector

# (in_channels, out_channels, blocks, channel schedule): ResNet-18/34 and
# ResNet-50+ stage widths
R18 = [(64, 512, 3, (64, 128, 256, 512)), (128, 512, 2, (128, 256, 512)),
       (256, 512, 1, (256, 512)), (512, 512, 0, (512, ))]
R50 = [(256, 2048, 3, (256, 512, 1024, 2048)),
       (512, 2048, 2, (512, 1024, 2048)), (1024, 2048, 1, (1024, 2048)),
       (2048, 2048, 0, (2048, ))]


def _pre_pool_shape(head, x):
    """Shape of the last block's output (before global pooling), seen by a
    forward hook on its last layer."""
    seen = []
    handle = head.blocks[-1][-1].register_forward_hook(
        lambda m, i, o: seen.append(o.shape))
    out = head(x)
    handle.remove()
    return tuple(seen[0]), out


@pytest.mark.parametrize('cin,cout,blocks,channels', R18 + R50)
def test_block_count_and_channel_schedule(cin, cout, blocks, channels):
    head = SepConvProjector(cin, cout)
    assert head.num_blocks == blocks and len(head.blocks) == blocks
    assert head.channels == channels
    # the modules themselves follow the schedule
    for block, c_in, c_out in zip(head.blocks, channels, channels[1:]):
        convs = [m for m in block if isinstance(m, nn.Conv2d)]
        assert [(m.in_channels, m.out_channels, m.groups, m.stride[0])
                for m in convs] == [(c_in, c_in, c_in, 2), (c_in, c_in, 1, 1),
                                    (c_in, c_in, c_in, 1), (c_in, c_out, 1, 1)]
        assert all(m.bias is None for m in convs)
    assert head.out_channels == cout


def test_geometric_schedule_for_other_widths():
    # log2(3) -> 2 blocks
    assert SepConvProjector(100, 300).channels == (100, 173, 300)
    # widths differ: >= 1 block
    assert SepConvProjector(96, 128).channels == (96, 128)
    assert SepConvProjector(256, 128).channels == (256, 128)
    assert SepConvProjector(64, 512, num_blocks=1).channels == (64, 512)


@pytest.mark.parametrize('size,final', [(32, 4), (56, 7)])
def test_resnet18_shapes_cifar_and_imagenet(size, final):
    # CIFAR ResNet: layer1..3 at 32/16/8 px all reach 4x4; ImageNet (56/28/14)
    # reach 7x7
    torch.manual_seed(0)
    for i, (cin, cout, blocks, _) in enumerate(R18[:3]):
        head = SepConvProjector(cin, cout)
        pre, out = _pre_pool_shape(head,
                                   torch.randn(2, cin, size >> i, size >> i))
        assert pre == (2, cout, final, final)
        assert out.shape == (2, cout)


def test_resnet50_layer3_shape():
    head = SepConvProjector(1024, 2048)
    pre, out = _pre_pool_shape(head, torch.randn(2, 1024, 8, 8))
    assert pre == (2, 2048, 4, 4) and out.shape == (2, 2048)


def test_zero_blocks_is_global_average_pooling():
    head = SepConvProjector(512, 512)
    x = torch.randn(3, 512, 4, 4)
    assert sum(p.numel() for p in head.parameters()) == 0
    torch.testing.assert_close(head(x), F.adaptive_avg_pool2d(x, 1).flatten(1))
    v = torch.randn(3, 512)
    assert head(v) is v


def test_parameter_count_64_to_512():
    # SepConv(a, b): 9a + a*a + 2a (BN) + 9a + a*b + 2b (BN)
    # 64->128: 13824, 128->256: 52224, 256->512: 202752
    head = SepConvProjector(64, 512)
    assert sum(p.numel()
               for p in head.parameters()) == 13824 + 52224 + 202752 == 268800


def test_sepconv_gradients_reach_input_and_every_parameter():
    head = SepConvProjector(64, 256).train()
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    head(x).pow(2).sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in head.parameters())


def test_sepconv_output_is_not_normalised():
    out = SepConvProjector(64, 128).eval()(torch.randn(4, 64, 8, 8))
    assert (out >= 0).all()  # ends with ReLU then pooling
    assert not torch.allclose(out.norm(dim=1), torch.ones(4))


def test_mlp_with_conv_on_fpn_level():
    head = MLPProjector(
        256, hid_channels=64, out_channels=32, num_convs=1, conv_channels=128)
    x = torch.randn(2, 256, 8, 8, requires_grad=True)
    out = head(x)
    assert out.shape == (2, 32) and head.out_channels == 32
    assert head.convs[0].in_channels == 256 and head.convs[
        0].out_channels == 128
    assert head.fc0.in_features == 128
    out.sum().backward()
    assert x.grad.abs().sum() > 0


def test_mlp_2d_input_and_layout():
    head = MLPProjector(64, hid_channels=32, out_channels=16)
    assert isinstance(head.norm, nn.BatchNorm1d) and head.fc0.bias is None
    x = torch.randn(4, 64, 5, 5)
    torch.testing.assert_close(head(x), head(x.mean(dim=(2, 3))))
    assert len(head.convs) == 0


def test_mlp_batch_of_one_in_training_uses_running_stats():
    head = MLPProjector(16, hid_channels=8, out_channels=4)
    with torch.no_grad():
        head.norm.running_mean.uniform_(-1, 1)
        head.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 16)
    stats = head.norm.running_mean.clone()
    out = head.train()(x)
    assert out.shape == (1, 4)
    torch.testing.assert_close(head.norm.running_mean, stats)  # untouched
    torch.testing.assert_close(out, head.eval()(x))
    # a conv head on a feature map of one image runs too (its conv BN sees H *
    # W values)
    conv_head = MLPProjector(16, 8, 4, num_convs=1).train()
    assert conv_head(torch.randn(1, 16, 3, 3)).shape == (1, 4)


@pytest.mark.parametrize('num_convs', [0, 1])
@pytest.mark.parametrize('train', [True, False])
def test_mlp_empty_batch(num_convs, train):
    head = MLPProjector(
        16, hid_channels=8, out_channels=4, num_convs=num_convs).train(train)
    x = torch.randn(0, 16, 6, 6, requires_grad=True)
    out = head(x)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_mlp_without_norm_has_biases():
    head = MLPProjector(8, 8, 4, num_convs=1, norm_cfg=None)
    assert head.convs[0].bias is not None and head.fc0.bias is not None
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in head.modules())
    assert head(torch.randn(1, 8, 3, 3)).shape == (1, 4)


def test_syncbn_falls_back_to_bn_on_one_process(monkeypatch):
    assert not torch.distributed.is_initialized()
    logs = []
    monkeypatch.setattr(projectors, '_syncbn_warned', False)
    monkeypatch.setattr(projectors, 'print_log',
                        lambda msg, **kw: logs.append(msg))
    sep = SepConvProjector(32, 64, norm_cfg=dict(type='SyncBN'))
    mlp = MLPProjector(32, 16, 8, num_convs=1, norm_cfg=dict(type='SyncBN'))
    norms = [
        m for m in [*sep.modules(), *mlp.modules()]
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    assert len(norms) == 4 and not any(
        isinstance(m, nn.SyncBatchNorm) for m in norms)
    assert isinstance(mlp.norm, nn.BatchNorm1d) and isinstance(
        mlp.convs[1], nn.BatchNorm2d)
    x = torch.randn(2, 32, 8, 8)
    assert sep.train()(x).shape == (2, 64) and mlp.train()(x).shape == (2, 8)
    assert len(logs) == 1 and "norm_cfg=dict(type='BN')" in logs[0]


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=0, out_channels=512), 'in_channels'),
    (dict(in_channels=64, out_channels=-1), 'out_channels'),
    (dict(in_channels=64, out_channels=512, num_blocks=0), 'num_blocks=0'),
    (dict(in_channels=64, out_channels=512, num_blocks=-1), 'num_blocks'),
])
def test_sepconv_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SepConvProjector(**kwargs)


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=0), 'in_channels'),
    (dict(in_channels=8, hid_channels=0), 'hid_channels'),
    (dict(in_channels=8, out_channels=0), 'out_channels'),
    (dict(in_channels=8, num_convs=-1), 'num_convs'),
    (dict(in_channels=8, num_convs=1, conv_channels=0), 'conv_channels'),
    (dict(in_channels=8, conv_channels=16), 'conv_channels'),
])
def test_mlp_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPProjector(**kwargs)


@pytest.mark.parametrize('head,x', [
    (SepConvProjector(64, 128), torch.randn(2, 64)),
    (SepConvProjector(64, 128), torch.randn(2, 32, 8, 8)),
    (SepConvProjector(64, 64), torch.randn(2, 32)),
    (MLPProjector(64, 8, 4, num_convs=1), torch.randn(2, 64)),
    (MLPProjector(64, 8, 4), torch.randn(2, 64, 4)),
    (MLPProjector(64, 8, 4), torch.randn(2, 32, 4, 4)),
])
def test_bad_input_shapes(head, x):
    with pytest.raises(ValueError, match=r'x must be \(N, 64'):
        head(x)


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_build_from_downstream_registries(scope):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    sep = registry.build(
        dict(type='SepConvProjector', in_channels=128, out_channels=512))
    mlp = registry.build(
        dict(type='MLPProjector', in_channels=256, num_convs=1))
    assert type(sep) is SepConvProjector and sep.channels == (128, 256, 512)
    assert type(mlp) is MLPProjector and mlp.out_channels == 128


def _sequential_forward(head, x):
    """The projectors' forward as it was before ``forward_views``: one
    batch, every layer in turn, default memory layout."""
    if isinstance(head, SepConvProjector):
        for block in head.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))
    if x.dim() == 4:
        x = head.convs(x).mean(dim=(2, 3))
    return head.fc1(head.act(head.norm(head.fc0(x))))


@pytest.mark.parametrize('make,shape', [
    (lambda: SepConvProjector(16, 64), (5, 16, 16, 16)),
    (lambda: SepConvProjector(32, 32), (5, 32, 4, 4)),
    (lambda: MLPProjector(16, 32, 8), (5, 16, 6, 6)),
    (lambda: MLPProjector(16, 32, 8, num_convs=1), (5, 16, 6, 6)),
])
def test_forward_views_is_the_projection_of_the_concatenation(make, shape):
    """Both views in one call: same outputs, gradients and running
    statistics as the earlier ``forward(torch.cat(views))``, within 1e-5."""
    torch.manual_seed(0)
    head = make().train()
    ref_head = copy.deepcopy(head)
    g = torch.Generator().manual_seed(1)
    views = [
        torch.randn(shape, generator=g, requires_grad=True) for _ in range(2)
    ]
    out = head.forward_views(views)
    ref = _sequential_forward(ref_head, torch.cat(views))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    weight = torch.randn(ref.shape, generator=g)
    grads = torch.autograd.grad(
        (out * weight).sum(),
        views + list(head.parameters()),
        allow_unused=True)
    ref_grads = torch.autograd.grad(
        (ref * weight).sum(),
        views + list(ref_head.parameters()),
        allow_unused=True)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for (name, a), b in zip(head.named_buffers(), ref_head.buffers()):
        torch.testing.assert_close(a, b, msg=name)
    # a single batch too
    torch.testing.assert_close(
        head.eval()(views[0]),
        _sequential_forward(ref_head.eval(), views[0]),
        atol=1e-5,
        rtol=1e-5)


def test_forward_views_of_different_sizes_share_norm_statistics():
    torch.manual_seed(0)
    head = SepConvProjector(8, 32).train()
    big, small = torch.randn(3, 8, 16, 16), torch.randn(3, 8, 8, 8)
    seen = []
    head.blocks[0][2].register_forward_hook(
        lambda m, i, o: seen.append(tuple(i[0].shape)))
    out = head.forward_views([big, small])
    assert out.shape == (6, 32)
    # the first norm ran once, on all values of both views at once
    assert seen == [(1, 8, 3 * 8 * 8 + 3 * 4 * 4, 1)]
    apart = torch.cat([head(big), head(small)])
    assert not torch.allclose(out, apart, atol=1e-3)


def _saved_bytes(fn):
    """Bytes of the storages autograd keeps for backward while ``fn`` runs."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


@pytest.mark.parametrize('sizes', [(16, 16), (16, 8)])
def test_with_cp_keeps_losses_and_gradients_and_saves_less(sizes):
    """Checkpointed blocks: the same outputs and gradients (views of one
    size and of two sizes), with less kept for backward."""
    torch.manual_seed(0)
    head = SepConvProjector(8, 64).train()
    cp_head = copy.deepcopy(head)
    cp_head.with_cp = True
    g = torch.Generator().manual_seed(1)
    views = [
        torch.randn(4, 8, s, s, generator=g, requires_grad=True) for s in sizes
    ]
    out, kept = _saved_bytes(lambda: head.forward_views(views))
    cp_out, cp_kept = _saved_bytes(lambda: cp_head.forward_views(views))
    torch.testing.assert_close(cp_out, out, atol=1e-6, rtol=1e-6)
    weight = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * weight).sum(),
                                views + list(head.parameters()))
    cp_grads = torch.autograd.grad((cp_out * weight).sum(),
                                   views + list(cp_head.parameters()))
    for a, b in zip(cp_grads, grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert cp_kept < kept / 2, (cp_kept, kept)
    # no graph, no checkpoint: evaluation is the plain forward
    with torch.no_grad():
        torch.testing.assert_close(cp_head(views[0]), head(views[0]))
