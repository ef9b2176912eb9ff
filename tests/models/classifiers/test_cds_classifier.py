import copy

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import cds_mm  # noqa: F401

CLASSIFIER = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=8,
        base_channels=8,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=5, in_channels=64),
    data_preprocessor=dict(mean=[1., 2., 3.], std=[4., 5., 6.], to_rgb=True))
TAPS = [f'backbone.layer{i}' for i in (1, 2, 3, 4)]


def build(mode='cds', **kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type='CDSClassifier',
        mode=mode,
        classifier=copy.deepcopy(CLASSIFIER),
        cds_head=dict(type='CDSHead', taps=TAPS),
        **kwargs)
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
    assert type(dp).__name__ == 'MultiViewClsDataPreprocessor'
    assert dp.data_preprocessor is model.classifier.data_preprocessor
    assert dp.data_preprocessor.mean.flatten().tolist() == [1., 2., 3.]
    assert dp.data_preprocessor.to_rgb


def test_cds_loss_trains_heads_and_backbone_view2_skips_neck_and_head():
    model = build().train()
    views, samples = batch()
    neck_calls, head_calls = [], []
    model.classifier.neck.register_forward_hook(
        lambda *a: neck_calls.append(1))
    orig_head_loss = model.classifier.head.loss
    model.classifier.head.loss = lambda *a, **k: head_calls.append(
        1) or orig_head_loss(*a, **k)
    losses = model.loss(views, samples)
    assert sorted(losses) == sorted(['loss_cls'] +
                                    [f'loss_cds_s{i}' for i in range(4)])
    # view 2: backbone only
    assert len(neck_calls) == 1 and len(head_calls) == 1
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name, p in model.cds_head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.classifier.backbone.layer1[0].conv1.weight.grad.abs().sum(
    ) > 0
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
    torch.testing.assert_close(
        model(x, mode='tensor'), plain(x, mode='tensor'))


def test_modes_differ_only_in_intermediate_loss():
    views, samples = batch()
    models = {mode: build(mode).eval() for mode in ('off', 'dsn', 'cds')}
    plain = models['off'].classifier.state_dict()
    for mode, model in models.items():  # one seed: the same inner classifier
        inner = model.classifier.state_dict()
        assert inner.keys() == plain.keys(), mode
        assert all(torch.equal(inner[k], plain[k]) for k in plain), mode
    losses = {
        mode: model.loss(views[0] if mode == 'dsn' else views, samples)
        for mode, model in models.items()
    }  # DSN needs no second view
    assert sorted(losses['off']) == ['loss_cls']
    assert list(models['off'].cds_head.parameters()) == []
    for mode in ('dsn', 'cds'):
        assert sorted(
            losses[mode]) == sorted(['loss_cls'] +
                                    [f'loss_{mode}_s{i}' for i in range(4)])
        assert all(torch.isfinite(v) and v > 0 for v in losses[mode].values())
        # the task loss is the plain classifier's CE on view 1 in every mode
        torch.testing.assert_close(losses[mode]['loss_cls'],
                                   losses['off']['loss_cls'])
    ce = F.cross_entropy(models['off'].classifier(views[0], mode='tensor'),
                         torch.cat([s.gt_label for s in samples]))
    torch.testing.assert_close(losses['off']['loss_cls'], ce)


def test_joint_batch_runs_both_views_through_one_forward():
    model = build(joint_batch=True).train()
    views, samples = batch()
    sizes = []
    model.classifier.backbone.register_forward_hook(
        lambda m, i, o: sizes.append(i[0].shape[0]))
    losses = model.loss(views, samples)
    assert sizes == [12]  # one 2N batch, like the authors' code
    assert sorted(losses) == sorted(['loss_cls'] +
                                    [f'loss_cds_s{i}' for i in range(4)])
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
        MODELS.build(
            dict(
                type='CDSClassifier',
                classifier=copy.deepcopy(CLASSIFIER),
                cds_head=dict(type='CDSHead', taps=['backbone.layer9'])))
    with pytest.raises(ValueError, match='in_channels says 99'):
        m = MODELS.build(
            dict(
                type='CDSClassifier',
                classifier=copy.deepcopy(CLASSIFIER),
                cds_head=dict(
                    type='CDSHead',
                    taps=TAPS[:1],
                    in_channels=[99],
                    projector=dict(type='MLPProjector'))))
        m.loss(*batch())
    with pytest.raises(ValueError, match='model.mixed_rows'):
        build(mixed_rows='mixed')
    views, samples = batch()
    with pytest.raises(ValueError, match='MultiView'):
        build().loss(views[0], samples)


def test_frozen_stage_tap_rejected():
    cfg = copy.deepcopy(CLASSIFIER)
    cfg['backbone']['frozen_stages'] = 1
    with pytest.raises(
            ValueError, match="'backbone.layer1' is a frozen module"):
        MODELS.build(
            dict(
                type='CDSClassifier',
                classifier=cfg,
                cds_head=dict(type='CDSHead', taps=TAPS)))


@pytest.mark.parametrize('collate', ['pseudo_collate', 'default_collate'])
def test_both_collate_functions_reach_the_loss(collate):
    """MultiView + PackInputs batches, collated either way, train the wrapper.
    """
    from mmengine.dataset import default_collate, pseudo_collate
    from mmpretrain.datasets.transforms import PackInputs
    model = build().train()
    views, samples = batch(n=4)
    pack = PackInputs()
    items = [
        pack(
            dict(
                img=[
                    views[0][i].permute(1, 2, 0).numpy(),
                    views[1][i].permute(1, 2, 0).numpy()
                ],
                gt_label=int(samples[i].gt_label))) for i in range(4)
    ]
    data = dict(
        pseudo_collate=pseudo_collate,
        default_collate=default_collate)[collate](
            items)
    data = model.data_preprocessor(data, True)
    assert [tuple(v.shape) for v in data['inputs']] == [(4, 3, 32, 32)] * 2
    losses = model(**data, mode='loss')
    assert sorted(losses) == sorted(['loss_cls'] +
                                    [f'loss_cds_s{i}' for i in range(4)])
    single = pseudo_collate([
        pack(dict(img=views[0][i].permute(1, 2, 0).numpy())) for i in range(4)
    ])
    assert model.data_preprocessor(single,
                                   False)['inputs'].shape == (4, 3, 32, 32)


def test_wrapper_exposes_the_inner_classifier():
    """What FeatureExtractor, vis_tsne.py and get_flops.py read from a model.
    """
    model = build().eval()
    inner = model.classifier
    for name in ('backbone', 'neck', 'head'):
        assert getattr(model, name) is getattr(inner, name), name
    assert model.with_neck and model.with_head
    x = torch.randn(2, 3, 32, 32)
    for stage in ('backbone', 'neck', 'pre_logits'):
        got, ref = model.extract_feat(
            x, stage=stage), inner.extract_feat(
                x, stage=stage)
        for a, b in zip(got if stage != 'pre_logits' else [got],
                        ref if stage != 'pre_logits' else [ref]):
            torch.testing.assert_close(a, b)
    assert model.extract_feat(x)[-1].shape == (2, 64)  # default stage: neck
    no_neck = copy.deepcopy(CLASSIFIER)
    no_neck.pop('neck')
    model = MODELS.build(
        dict(
            type='CDSClassifier',
            classifier=no_neck,
            cds_head=dict(type='CDSHead', taps=TAPS)))
    assert model.neck is None and not model.with_neck


def _randomised(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=g))
    return module


@pytest.mark.parametrize('wrapper', ['CDSClassifier', 'SemiCDSClassifier'])
def test_plain_and_cds_checkpoints_both_load(wrapper, tmp_path, monkeypatch):
    from mmengine.runner import load_checkpoint

    from cds_mm.models.utils import plain_checkpoint
    logged = []
    monkeypatch.setattr(plain_checkpoint, 'print_log',
                        lambda msg, **kw: logged.append(msg))
    plain = _randomised(MODELS.build(copy.deepcopy(CLASSIFIER)), 1)
    torch.save(
        dict(state_dict=plain.state_dict(), meta={}), tmp_path / 'plain.pth')
    model = MODELS.build(
        dict(
            type=wrapper,
            classifier=copy.deepcopy(CLASSIFIER),
            cds_head=dict(type='CDSHead', taps=TAPS)))
    heads = copy.deepcopy(model.cds_head.state_dict())
    load_checkpoint(model, str(tmp_path / 'plain.pth'), map_location='cpu')
    assert len(logged) == 1 and '"classifier."' in logged[0]
    for k, v in plain.state_dict().items():
        assert torch.equal(model.classifier.state_dict()[k], v), k
    for k, v in model.cds_head.state_dict().items():
        assert torch.equal(v, heads[k]), k  # the heads keep their init
    # the wrapper's own checkpoint loads unchanged, heads included
    _randomised(model, 2)
    torch.save(
        dict(state_dict=model.state_dict(), meta={}), tmp_path / 'cds.pth')
    other = MODELS.build(
        dict(
            type=wrapper,
            classifier=copy.deepcopy(CLASSIFIER),
            cds_head=dict(type='CDSHead', taps=TAPS)))
    missing, unexpected = other.load_state_dict(
        torch.load(tmp_path / 'cds.pth', weights_only=True)['state_dict'])
    assert missing == [] and unexpected == [] and len(logged) == 1
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k


def _input_sizes(model):
    """Side of every input that reaches layer1, in call order."""
    sizes = []
    model.classifier.backbone.layer1.register_forward_hook(
        lambda m, i, o: sizes.append(i[0].shape[-1]))
    return sizes


def test_view2_scale_runs_view2_smaller_through_shared_norms():
    model = build(view2_scale=0.5).train()
    sizes = _input_sizes(model)
    views, samples = batch()
    losses = model.loss(views, samples)
    assert sizes == [32, 16]  # view 1 as given, view 2 at half size
    sum(losses.values()).backward()
    for name, p in model.cds_head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the projections are those of both views' features in one batch
    model.eval()
    losses = model.loss(views, samples)
    small = F.interpolate(
        views[1], size=(16, 16), mode='bilinear', antialias=True)
    with model.taps.capture() as f1:
        model.classifier.backbone(views[0])
    with model.taps.capture() as f2:
        model.classifier.backbone(small)
    labels = torch.tensor([s.gt_label.item() for s in samples])
    for k, v in model.cds_head.loss(f1, f2, labels).items():
        torch.testing.assert_close(losses[k], v)


@pytest.mark.parametrize('scale', [0.5, 1.0])
def test_a_smaller_view2_leaves_the_running_statistics_to_view1(scale):
    """At another size, view 2 trains through the backbone's norms but
    does not move their running statistics (evaluation sees view 1's size);
    at the same size it updates them as the paper's pass does."""
    model = build(view2_scale=scale).train()
    view1_only = copy.deepcopy(model)
    views, samples = batch()
    model.loss(views, samples)
    view1_only.classifier.loss(views[0], samples)

    def stats(m):
        return [(n, b) for n, b in m.classifier.named_buffers()
                if 'running' in n or 'num_batches' in n]

    assert stats(model)
    same = all(
        torch.equal(a, b)
        for (_, a), (_, b) in zip(stats(model), stats(view1_only)))
    assert same == (scale != 1)


def test_cds_interval_adds_the_contrastive_term_every_kth_step():
    model = build(cds_interval=3).train()
    sizes = _input_sizes(model)
    views, samples = batch()
    keys = []
    for step in range(4):
        model.zero_grad()
        losses = model.loss(views, samples)
        keys.append(sorted(k for k in losses if k != 'loss_cls'))
        sum(losses.values()).backward()
        grads = [p.grad for p in model.cds_head.parameters()]
        # heads stay in the graph on the other steps (DDP), with zero grads
        assert all(g is not None for g in grads)
        assert any(g.abs().sum() > 0 for g in grads) == (step % 3 == 0)
    cds = [f'loss_cds_s{i}' for i in range(4)]
    assert keys == [cds, ['loss_cds_skipped'], ['loss_cds_skipped'], cds]
    assert len(sizes) == 4 + 2  # view 2 runs only on the CDS steps
    assert losses['loss_cls'] > 0


@pytest.mark.parametrize('kwargs,match', [
    (dict(view2_scale=0), r'model.view2_scale must be in \(0, 1\]'),
    (dict(view2_scale=1.5), r'model.view2_scale must be in \(0, 1\]'),
    (dict(view2_scale=0.5, joint_batch=True), 'model.view2_scale=0.5 with '
     "model.view2_norm='joint'"),
    (dict(view2_scale=0.5, view2_norm='split_tracked'),
     "model.view2_scale=0.5 with model.view2_norm='split_tracked'"),
    (dict(view2_norm='own'), r"model.view2_norm must be one of \('split'"),
    (dict(joint_batch=True, view2_norm='split'),
     "model.joint_batch=True means model.view2_norm='joint'"),
    (dict(cds_interval=0), 'model.cds_interval must be an int >= 1'),
    (dict(cds_interval=2.0), 'model.cds_interval must be an int >= 1'),
])
def test_cheaper_variant_errors_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_semi_takes_every_option_through_the_one_loss_path():
    """SemiCDSClassifier runs CDSClassifier's loss template: view2_scale,
    cds_interval and view2_norm='joint' act there as in CDSClassifier."""
    from test_semi_cds_classifier import build as build_semi
    from test_semi_cds_classifier import mixed_batch
    model = build_semi(view2_scale=0.5, cds_interval=2)
    sizes = _input_sizes(model)
    views, samples = mixed_batch()
    keys = [sorted(model.loss(views, samples)) for _ in range(2)]
    cds = [f'loss_{k}_s{i}' for k in ('cds', 'unsup') for i in range(4)]
    assert keys == [
        sorted(['loss_cls'] + cds), ['loss_cds_skipped', 'loss_cls']
    ]
    assert sizes == [32, 16, 32]  # view 2 at half size, on CDS steps only
    joint = build_semi(view2_norm='joint')
    sizes = _input_sizes(joint)
    losses = joint.loss(views, samples)
    assert sizes == [32] and sorted(losses) == sorted(['loss_cls'] + cds)


def _running_stats(model):
    return {
        n: b.clone()
        for n, b in model.classifier.named_buffers() if 'running' in n
    }


@pytest.mark.parametrize('policy', ['split', 'split_tracked', 'joint'])
def test_view2_norm_policies_set_the_running_statistics(policy):
    """'split': view 1's pass alone moves them; 'split_tracked': view 1's then
    view 2's pass; 'joint': one pass over the 2N batch (the authors')."""
    model = build(view2_norm=policy).train()
    ref = copy.deepcopy(model.classifier)
    views, samples = batch()
    model.loss(views, samples)
    if policy == 'joint':
        ref.extract_feat(torch.cat(views))
    else:
        ref.extract_feat(views[0])
        if policy == 'split_tracked':
            ref.extract_feat(views[1])
    want = {n: b for n, b in ref.named_buffers() if 'running' in n}
    got = _running_stats(model)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], msg=name)


def test_view2_norm_default_keeps_each_wrappers_behaviour():
    assert build().view2_norm == 'split_tracked'
    assert build(view2_scale=0.5).view2_norm == 'split'
    assert build(joint_batch=True).view2_norm == 'joint'
