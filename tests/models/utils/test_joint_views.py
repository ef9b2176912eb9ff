import copy

import pytest
import torch
import torch.nn as nn

from cds_mm.models.utils.joint_views import (cat_views, forward_views,
                                             joint_batch_norm)


def _layers():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False),
        nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6))


def _views(sizes=(8, 8), n=5):
    g = torch.Generator().manual_seed(1)
    return [
        torch.randn(n, 4, s, s, generator=g, requires_grad=True) for s in sizes
    ]


def test_equal_shapes_match_sequential_on_the_concatenation():
    layers = _layers().train()
    ref_layers = copy.deepcopy(layers)
    views = _views()
    out = forward_views(layers, views)
    ref = ref_layers(torch.cat(views))
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # same running statistics, same gradients
    for a, b in zip(layers.modules(), ref_layers.modules()):
        if isinstance(a, nn.BatchNorm2d):
            torch.testing.assert_close(a.running_mean, b.running_mean)
            torch.testing.assert_close(a.running_var, b.running_var)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, views + list(layers.parameters()), g)
    ref_grads = torch.autograd.grad(ref, views + list(ref_layers.parameters()),
                                    g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_views_meet_only_at_the_first_norm():
    layers = _layers().train()
    seen = []
    for m in layers:
        m.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    forward_views(layers, _views(n=5))
    # 2 convs per view (batch 5), then the joined batch of 10
    assert seen == [5, 5, 5, 5, 10, 10, 10, 10]


def test_different_sizes_share_the_norm_statistics():
    norm = nn.BatchNorm2d(4, momentum=1.0).train()  # running = last batch
    a, b = _views(sizes=(8, 4))
    out_a, out_b = joint_batch_norm(norm, [a, b])
    values = torch.cat(
        [a.transpose(0, 1).reshape(4, -1),
         b.transpose(0, 1).reshape(4, -1)], 1)
    mean, var = values.mean(1), values.var(1, unbiased=False)
    for x, out in ((a, out_a), (b, out_b)):
        assert out.shape == x.shape
        ref = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] +
                                                     norm.eps)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.running_mean, mean)
    torch.testing.assert_close(norm.running_var, values.var(1))
    # forward_views keeps such views apart and still returns both
    outs = forward_views(_layers().train(), [a, b])
    assert [tuple(o.shape) for o in outs] == [(5, 6, 4, 4), (5, 6, 2, 2)]


def test_batchnorm1d_views_of_different_length():
    norm = nn.BatchNorm1d(3).train()
    views = [torch.randn(2, 3, 5), torch.randn(4, 3, 2)]
    outs = joint_batch_norm(norm, views)
    assert [o.shape for o in outs] == [v.shape for v in views]
    flat = torch.cat([o.transpose(0, 1).reshape(3, -1) for o in outs], 1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize('shape,cl', [((2, 3, 4, 4), True), ((2, 3), False)])
def test_cat_views_layout(shape, cl):
    views = [torch.randn(shape), torch.randn(shape)]
    x = cat_views(views, channels_last=True)
    torch.testing.assert_close(x, torch.cat(views))
    assert x.is_contiguous(memory_format=torch.channels_last) == cl
    assert cat_views(views).is_contiguous()
    assert cat_views(views[:1]).shape == shape
