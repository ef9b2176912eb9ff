import copy

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from test_cds_classifier import CLASSIFIER, TAPS  # noqa: E402

import cds_mm  # noqa: F401


def build(mode='cds', **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault('classifier', CLASSIFIER)
    kwargs['classifier'] = copy.deepcopy(kwargs['classifier'])
    cfg = dict(
        type='SemiCDSClassifier',
        mode=mode,
        cds_head=dict(type='CDSHead', taps=TAPS),
        **kwargs)
    return MODELS.build(cfg).train()


def mixed_batch(labels=(0, 1, None, 1, None, None, 2, None), seed=0):
    """Two views of len(labels) images; ``None`` marks an unlabelled one."""
    g = torch.Generator().manual_seed(seed)
    views = [
        torch.randn(len(labels), 3, 32, 32, generator=g) for _ in range(2)
    ]
    samples = [
        DataSample() if y is None else DataSample().set_gt_label(y)
        for y in labels
    ]
    return views, samples


def spy(model, name):
    """Record the arguments of ``model.classifier.<name>`` calls."""
    calls, obj = [], model.classifier
    attr = name.split('.')[-1]
    if '.' in name:
        obj = getattr(obj, name.split('.')[0])
    orig = getattr(obj, attr)
    setattr(obj, attr, lambda *a, **k: calls.append((a, k)) or orig(*a, **k))
    return calls


def test_unlabelled_rows_never_reach_the_classifier_head():
    model = build()
    views, samples = mixed_batch()
    head_calls = spy(model, 'head.loss')
    losses = model.loss(views, samples)
    (feats, got_samples), _ = head_calls[0]
    assert len(head_calls) == 1
    assert got_samples == [samples[i] for i in (0, 1, 3, 6)]
    assert feats[-1].shape[0] == 4
    assert sorted(losses) == sorted(['loss_cls'] +
                                    [f'loss_cds_s{i}' for i in range(4)] +
                                    [f'loss_unsup_s{i}' for i in range(4)])
    assert all(torch.isfinite(v) for v in losses.values())


def test_ce_equals_labelled_rows_ce():
    model = build()
    views, samples = mixed_batch()
    model.eval()  # BatchNorm statistics must not depend on which rows follow
    losses = model.loss(views, samples)
    lab = [0, 1, 3, 6]
    logits = model.classifier.head(
        model.classifier.extract_feat(views[0][lab]))
    expected = F.cross_entropy(logits, torch.tensor([0, 1, 1, 2]))
    torch.testing.assert_close(losses['loss_cls'], expected)


def test_all_unlabelled_batch_gives_the_head_no_gradient():
    model = build()
    views, samples = mixed_batch(labels=(None, ) * 6)
    head_calls = spy(model, 'head.loss')
    losses = model.loss(views, samples)
    assert not head_calls
    assert losses['loss_cls'].item() == 0
    # SupCon ran on zero rows (a collective under gather_distributed): 0
    assert [losses[f'loss_cds_s{i}'].item() for i in range(4)] == [0.0] * 4
    sum(losses.values()).backward()
    fc = model.classifier.head.fc
    # in graph, zero
    assert fc.weight.grad is not None and fc.weight.grad.abs().max() == 0
    # SimCLR
    assert model.classifier.backbone.layer1[0].conv1.weight.grad.abs().max(
    ) > 0


def test_unlabelled_weight_scales_the_unlabelled_terms_only():
    views, samples = mixed_batch()
    runs = {
        w: build(unlabelled_weight=w).loss(views, samples)
        for w in (0.0, 1.0, 2.5)
    }
    for i in range(4):
        key = f'loss_unsup_s{i}'
        assert runs[1.0][key] > 0
        assert runs[0.0][key] == 0
        torch.testing.assert_close(runs[2.5][key], 2.5 * runs[1.0][key])
        torch.testing.assert_close(runs[2.5][f'loss_cds_s{i}'],
                                   runs[1.0][f'loss_cds_s{i}'])


def test_unlabelled_loss_is_label_free_simclr():
    model = build()
    views, samples = mixed_batch()
    losses = model.loss(views, samples)
    z1, z2 = model.cds_head.project_views(*[
        _taps(model, v, stage)
        for v, stage in zip(views, ('backbone', 'backbone'))
    ])
    unl = [2, 4, 5, 7]
    simclr = model.cds_head.loss_module(
        torch.stack([z1[0][unl], z2[0][unl]], 1), None)
    torch.testing.assert_close(losses['loss_unsup_s0'], 0.1 * simclr)


def _taps(model, view, stage):
    with model.taps.capture() as feats:
        model.classifier.extract_feat(view, stage=stage)
    return feats


def test_mode_off_trains_on_the_labelled_rows_only():
    model = build(mode='off')
    views, samples = mixed_batch()
    calls = spy(model, 'extract_feat')
    losses = model.loss(views, samples)
    assert list(losses) == ['loss_cls']
    assert calls[0][0][0].shape[0] == 4


@pytest.mark.parametrize('kwargs,match', [
    (dict(mode='dsn'), 'model.mode'),
    (dict(unlabelled_weight=-1.0), 'model.unlabelled_weight'),
    (dict(
        classifier=dict(
            CLASSIFIER,
            train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8)]))),
     'model.classifier.train_cfg.augments'),
])
def test_bad_settings_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


@pytest.mark.parametrize('collate', ['pseudo_collate', 'default_collate'])
def test_a_partly_labelled_batch_passes_the_data_preprocessor(collate):
    from mmengine.dataset import default_collate, pseudo_collate
    from mmpretrain.datasets.transforms import PackInputs
    model = build()
    views, samples = mixed_batch()
    pack = PackInputs()
    items = []
    for i, s in enumerate(samples):
        imgs = [v[i].permute(1, 2, 0).numpy() for v in views]
        info = dict(img=imgs) if 'gt_label' not in s else dict(
            img=imgs, gt_label=int(s.gt_label))
        items.append(pack(info))
    data = dict(
        pseudo_collate=pseudo_collate,
        default_collate=default_collate)[collate](
            items)
    data = model.data_preprocessor(data, True)
    assert [tuple(v.shape) for v in data['inputs']] == [(8, 3, 32, 32)] * 2
    mean = torch.tensor([1., 2., 3.]).view(1, 3, 1, 1)
    std = torch.tensor([4., 5., 6.]).view(1, 3, 1, 1)
    torch.testing.assert_close(data['inputs'][1],
                               (views[1].flip(1) - mean) / std)  # to_rgb
    got = [
        int(s.gt_label) if 'gt_label' in s else None
        for s in data['data_samples']
    ]
    assert got == [
        None if 'gt_label' not in s else int(s.gt_label) for s in samples
    ]
    losses = model(**data, mode='loss')
    assert 'loss_unsup_s0' in losses and 'loss_cds_s0' in losses


@pytest.mark.parametrize('labels', [(0, 1, 1, 2), (None, None, None)])
def test_both_contrastive_losses_run_whatever_rows_a_batch_holds(labels):
    """A batch without unlabelled (or labelled) rows still calls both losses
    (each a collective under gather_distributed), on zero rows."""
    model = build()
    calls = []
    orig = model.cds_head.loss_module.forward
    model.cds_head.loss_module.forward = lambda f, y=None: calls.append(
        (f.shape[0], y is None)) or orig(f, y)
    losses = model.loss(*mixed_batch(labels))
    n_lab = sum(y is not None for y in labels)
    # 4 taps x (SupCon on the labelled rows, then SimCLR on the others)
    assert calls == [(n_lab, False)] * 4 + [(len(labels) - n_lab, True)] * 4
    empty = 'loss_unsup_s0' if n_lab == len(labels) else 'loss_cds_s0'
    assert losses[empty].item() == 0
    assert sum(losses.values()).requires_grad
