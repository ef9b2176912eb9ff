import copy

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import cds_mm  # noqa: F401

CLASSIFIER = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                  base_channels=8, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=5, in_channels=64),
    data_preprocessor=dict(mean=[1., 2., 3.], std=[4., 5., 6.], to_rgb=True))
TAPS = [f'backbone.layer{i}' for i in (1, 2, 3, 4)]


def build(mode='cds', **kwargs):
    torch.manual_seed(0)
    cfg = dict(type='CDSClassifier', mode=mode,
               classifier=copy.deepcopy(CLASSIFIER),
               cds_head=dict(type='CDSHead', taps=TAPS), **kwargs)
    return MODELS.build(cfg)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(n, 3, 32, 32, generator=g) for _ in range(2)]
    labels = torch.tensor([0, 1, 1, 2, 3, 3, 4, 0][:n])
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    return views, samples


def test_probes_channels_and_builds_paper_heads():
    model = build()
    assert model.cds_head.in_channels == [8, 16, 32, 64]
    # SepConv stacks reach the last stage's width: 3, 2, 1, 0 blocks
    assert [p.out_channels for p in model.cds_head.projectors] == [64] * 4
    assert len(list(model.cds_head.projectors[3].parameters())) == 0
    dp = model.data_preprocessor
    assert type(dp).__name__ == 'MultiViewDataPreprocessor'
    assert dp.mean.flatten().tolist() == [1., 2., 3.]
    assert dp._channel_conversion


def test_cds_loss_trains_heads_and_backbone_view2_skips_neck_and_head():
    model = build().train()
    views, samples = batch()
    neck_calls, head_calls = [], []
    model.classifier.neck.register_forward_hook(lambda *a: neck_calls.append(1))
    orig_head_loss = model.classifier.head.loss
    model.classifier.head.loss = lambda *a, **k: head_calls.append(1) or orig_head_loss(*a, **k)
    losses = model.loss(views, samples)
    assert sorted(losses) == sorted(['loss_cls'] + [f'loss_cds_s{i}' for i in range(4)])
    assert len(neck_calls) == 1 and len(head_calls) == 1  # view 2: backbone only
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name, p in model.cds_head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.classifier.backbone.layer1[0].conv1.weight.grad.abs().sum() > 0
    for m in model.modules():
        assert not m._forward_hooks or m is model.classifier.neck


def test_cds_loss_equals_head_loss_on_view1_plus_supcon():
    model = build().train()
    views, samples = batch()
    losses = model.loss(views, samples)
    # same CE as the plain classifier on view 1 (BN stats drift once: eval)
    model.eval()
    losses = model.loss(views, samples)
    plain = model.classifier.loss(views[0], samples)
    torch.testing.assert_close(losses['loss_cls'], plain['loss'])
    labels = torch.tensor([s.gt_label.item() for s in samples])
    with model.taps.capture() as f1:
        model.classifier.backbone(views[0])
    with model.taps.capture() as f2:
        model.classifier.backbone(views[1])
    expect = model.cds_head.loss(f1, f2, labels)
    assert sorted(expect) == [f'loss_cds_s{i}' for i in range(4)]
    for k, v in expect.items():
        torch.testing.assert_close(losses[k], v)


def test_predict_is_the_plain_classifier():
    model = build().eval()
    plain = MODELS.build(copy.deepcopy(CLASSIFIER)).eval()
    plain.load_state_dict(model.classifier.state_dict(), strict=True)
    x = torch.randn(3, 3, 32, 32)
    got = model.predict(x)
    ref = plain.predict(x)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.pred_score, b.pred_score)
    torch.testing.assert_close(model(x, mode='tensor'), plain(x, mode='tensor'))


def test_modes_differ_only_in_intermediate_loss():
    views, samples = batch()
    dsn = build('dsn').train()
    losses = dsn.loss(views[0], samples)  # DSN needs no second view
    assert sorted(losses) == sorted(['loss_cls'] + [f'loss_dsn_s{i}' for i in range(4)])
    assert all(torch.isfinite(v) for v in losses.values())
    off = build('off').train()
    assert list(off.cds_head.parameters()) == []
    assert sorted(off.loss(views, samples)) == ['loss_cls']
    # same inner weights layout in all three modes
    cds = build('cds')
    assert cds.classifier.state_dict().keys() == off.classifier.state_dict().keys()


def test_joint_batch_runs_both_views_through_one_forward():
    model = build(joint_batch=True).train()
    views, samples = batch()
    sizes = []
    model.classifier.backbone.register_forward_hook(
        lambda m, i, o: sizes.append(i[0].shape[0]))
    losses = model.loss(views, samples)
    assert sizes == [12]  # one 2N batch, like the authors' code
    assert sorted(losses) == sorted(['loss_cls'] + [f'loss_cds_s{i}' for i in range(4)])
    assert torch.isfinite(sum(losses.values()))


def test_weight_scale_scales_every_cds_term():
    model = build().eval()
    views, samples = batch()
    full = model.loss(views, samples)
    model.cds_head.set_weight_scale(0.0)
    zero = model.loss(views, samples)
    for i in range(4):
        assert full[f'loss_cds_s{i}'] != 0
        assert zero[f'loss_cds_s{i}'] == 0
    torch.testing.assert_close(full['loss_cls'], zero['loss_cls'])


def test_errors_name_the_config_key():
    with pytest.raises(ValueError, match='model.mode'):
        build('simclr')
    with pytest.raises(ValueError, match=r"cds_head.taps: 'backbone.layer9'"):
        MODELS.build(dict(type='CDSClassifier', classifier=copy.deepcopy(CLASSIFIER),
                          cds_head=dict(type='CDSHead', taps=['backbone.layer9'])))
    with pytest.raises(ValueError, match='in_channels says 99'):
        m = MODELS.build(dict(
            type='CDSClassifier', classifier=copy.deepcopy(CLASSIFIER),
            cds_head=dict(type='CDSHead', taps=TAPS[:1], in_channels=[99],
                          projector=dict(type='MLPProjector'))))
        m.loss(*batch())
    views, samples = batch()
    with pytest.raises(ValueError, match='MultiView'):
        build().loss(views[0], samples)


def test_frozen_stage_tap_rejected():
    cfg = copy.deepcopy(CLASSIFIER)
    cfg['backbone']['frozen_stages'] = 1
    with pytest.raises(ValueError, match="'backbone.layer1' is a frozen module"):
        MODELS.build(dict(type='CDSClassifier', classifier=cfg,
                          cds_head=dict(type='CDSHead', taps=TAPS)))


@pytest.mark.parametrize('collate', ['pseudo_collate', 'default_collate'])
def test_both_collate_functions_reach_the_loss(collate):
    """MultiView + PackInputs batches, collated either way, train the wrapper."""
    from mmengine.dataset import default_collate, pseudo_collate
    from mmpretrain.datasets.transforms import PackInputs
    model = build().train()
    views, samples = batch(n=4)
    pack = PackInputs()
    items = [pack(dict(img=[views[0][i].permute(1, 2, 0).numpy(),
                            views[1][i].permute(1, 2, 0).numpy()],
                       gt_label=int(samples[i].gt_label))) for i in range(4)]
    data = dict(pseudo_collate=pseudo_collate, default_collate=default_collate)[collate](items)
    data = model.data_preprocessor(data, True)
    assert [tuple(v.shape) for v in data['inputs']] == [(4, 3, 32, 32)] * 2
    losses = model(**data, mode='loss')
    assert sorted(losses) == sorted(['loss_cls'] + [f'loss_cds_s{i}' for i in range(4)])
    single = pseudo_collate([pack(dict(img=views[0][i].permute(1, 2, 0).numpy()))
                             for i in range(4)])
    assert model.data_preprocessor(single, False)['inputs'].shape == (4, 3, 32, 32)
