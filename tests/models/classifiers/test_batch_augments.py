"""An upstream recipe with Mixup + CutMix keeps them inside CDSClassifier.

The recipe is mmpretrain's ConvNeXt-T ImageNet config
(``train_cfg.augments``: Mixup 0.8, CutMix 1.0; LabelSmoothLoss), shrunk to a
4-stage ConvNeXt of width 16-64 on 32 px images. The plain classifier is
built as the Runner builds it (the top-level ``data_preprocessor`` merged
into the model); the CDS one gets that dict the same way.
"""
import copy

import numpy as np
import pytest
import torch
from cds_test_utils import build_cls
from mmengine.dataset import default_collate, pseudo_collate
from mmengine.hub import get_config
from mmengine.optim import OptimWrapper
from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.structures import DataSample

import cds_mm  # noqa: F401

RECIPE = 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'
TAPS = [f'backbone.stages.{i}' for i in range(4)]
N = 6


@pytest.fixture(scope='module')
def recipe():
    """(model config, top-level data_preprocessor) of the tiny recipe."""
    cfg = get_config(RECIPE)
    model = copy.deepcopy(cfg.model)
    model.backbone.arch = dict(depths=[1, 1, 1, 1], channels=[16, 32, 48, 64])
    model.head.update(in_channels=64, num_classes=10)
    model.init_cfg = None
    preprocessor = copy.deepcopy(cfg.data_preprocessor)
    preprocessor.num_classes = 10
    return model.to_dict(), preprocessor.to_dict()


def build_plain(recipe):
    model, preprocessor = copy.deepcopy(recipe)
    model.setdefault('data_preprocessor', preprocessor)  # as the Runner does
    torch.manual_seed(0)
    return build_cls(model)


def build_cds(recipe, **kwargs):
    model, preprocessor = copy.deepcopy(recipe)
    torch.manual_seed(0)
    return build_cls(
        dict(
            type='CDSClassifier',
            classifier=model,
            data_preprocessor=preprocessor,
            cds_head=dict(
                type='CDSHead',
                taps=TAPS,
                projector=dict(
                    type='MLPProjector', hid_channels=32, out_channels=16)),
            probe_size=32,
            **kwargs))


def _augments(preprocessor):
    aug = preprocessor.batch_augments
    return [(type(a).__name__, a.alpha) for a in aug.augments], aug.probs


def test_wrapped_recipe_keeps_the_batch_augments(recipe):
    plain, cds = build_plain(recipe), build_cds(recipe)
    inner = cds.data_preprocessor.data_preprocessor
    wrapper = type(cds.data_preprocessor).__name__
    assert wrapper == 'MultiViewClsDataPreprocessor'
    assert inner is cds.classifier.data_preprocessor  # the classifier's own
    assert _augments(inner) == _augments(plain.data_preprocessor)
    assert _augments(inner)[0] == [('Mixup', 0.8), ('CutMix', 1.0)]
    for key in ('to_onehot', 'num_classes', 'to_rgb', 'pad_size_divisor'):
        assert getattr(inner, key) == getattr(plain.data_preprocessor,
                                              key), key
    torch.testing.assert_close(inner.mean, plain.data_preprocessor.mean)
    torch.testing.assert_close(inner.std, plain.data_preprocessor.std)


def _items(seed=0):
    """N packed MultiView samples: uint8 HWC images of two views, labels."""
    rng = np.random.default_rng(seed)
    pack = PackInputs()
    return [
        pack(
            dict(
                img=[
                    rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    for _ in range(2)
                ],
                gt_label=i % 3)) for i in range(N)
    ]


def _single_view(items, view):
    return [
        dict(
            inputs=it['inputs'][view],
            data_samples=copy.deepcopy(it['data_samples'])) for it in items
    ]


def _seeded(fn, seed=3):
    np.random.seed(seed)  # RandomBatchAugment, Mixup and CutMix draws
    torch.manual_seed(seed)  # the permutation
    return fn()


@pytest.mark.parametrize('collate', [pseudo_collate, default_collate])
def test_view1_is_the_plain_recipe_and_view2_is_never_mixed(recipe, collate):
    plain, cds = build_plain(recipe), build_cds(recipe)
    items = _items()
    for seed in range(4):  # Mixup, CutMix, whichever RandomBatchAugment draws
        got = _seeded(
            lambda: cds.data_preprocessor(collate(copy.deepcopy(items)), True),
            seed)
        ref = _seeded(
            lambda: plain.data_preprocessor(
                collate(_single_view(items, 0)), True), seed)
        view1, view2 = got['inputs']
        torch.testing.assert_close(view1, ref['inputs'])
        scores = torch.stack([s.gt_score for s in got['data_samples']])
        torch.testing.assert_close(
            scores, torch.stack([s.gt_score for s in ref['data_samples']]))
        assert scores.max(1).values.min() < 1  # soft labels for CE
        hard = [int(s.gt_label) for s in got['data_samples']]
        assert hard == [i % 3 for i in range(N)]  # SupCon's labels
        clean = plain.data_preprocessor(collate(_single_view(items, 1)), False)
        torch.testing.assert_close(view2, clean['inputs'])
        unmixed = plain.data_preprocessor(
            collate(_single_view(items, 0)), False)
        changed = (view1 != unmixed['inputs']).flatten(1).any(1).tolist()
        assert [s.batch_augmented for s in got['data_samples']] == changed
        assert any(changed)


def _loss_spy(model):
    """Record the (z1, z2, labels) that reach the contrastive loss."""
    calls, orig = [], model.cds_head.loss_by_projections
    model.cds_head.loss_by_projections = lambda z1, z2, labels, **kw: (
        calls.append((z1, z2, labels)) or orig(z1, z2, labels, **kw))
    return calls


def _batch(mixed):
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(N, 3, 32, 32, generator=g) for _ in range(2)]
    samples = []
    for i in range(N):
        s = DataSample().set_gt_label(i % 3).set_gt_score(
            torch.full((10, ), 0.1))
        s.set_metainfo(dict(batch_augmented=i in mixed))
        samples.append(s)
    return views, samples


@pytest.mark.parametrize('mixed_rows', ['hard_labels', 'skip'])
def test_supcon_gets_hard_labels_or_skips_the_mixed_rows(recipe, mixed_rows):
    model = build_cds(recipe, mixed_rows=mixed_rows).eval()
    mixed = {1, 4}
    views, samples = _batch(mixed)
    calls = _loss_spy(model)
    losses = model.loss(views, samples)
    (z1, z2, labels), = calls
    keep = list(range(N)) if mixed_rows == 'hard_labels' else [
        i for i in range(N) if i not in mixed
    ]
    assert labels.tolist() == [i % 3 for i in keep]
    full1, full2 = model.cds_head.project_views(
        model._tapped(views[0]), model._tapped(views[1]))
    for a, b, c, d in zip(z1, z2, full1, full2):
        torch.testing.assert_close(a, c[keep])
        torch.testing.assert_close(b, d[keep])
    assert all(torch.isfinite(v) for v in losses.values())


def test_a_fully_mixed_batch_with_skip_adds_zero_cds_loss_in_graph(recipe):
    model = build_cds(recipe, mixed_rows='skip').train()
    views, samples = _batch(mixed=set(range(N)))
    losses = model.loss(views, samples)
    cds = [v for k, v in losses.items() if k.startswith('loss_cds')]
    assert len(cds) == 4 and all(v.item() == 0 for v in cds)
    sum(losses.values()).backward()
    proj = model.cds_head.projectors[0].fc1.weight
    assert proj.grad is not None and proj.grad.abs().max() == 0


def test_a_few_training_iterations_run_with_mixup_and_cutmix(recipe):
    model = build_cds(recipe).train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    seen_soft = []
    orig = model.classifier.head.loss
    model.classifier.head.loss = lambda feats, samples, **kw: (
        seen_soft.append(all('gt_score' in s
                             for s in samples)) or orig(feats, samples, **kw))
    np.random.seed(0)
    for seed in range(3):
        log_vars = model.train_step(pseudo_collate(_items(seed)), optim)
        assert {'loss', 'loss_cls', 'loss_cds_s3'} <= set(log_vars)
        assert all(torch.isfinite(v) for v in log_vars.values()), log_vars
    assert seen_soft == [True] * 3  # CE had the (soft) scores
    moved = {
        k
        for k, v in model.named_parameters() if not torch.equal(v, before[k])
    }
    assert any(k.startswith('classifier.backbone.') for k in moved)
    assert any(k.startswith('cds_head.') for k in moved)


def test_view2_batch_colour_leaves_view1_the_plain_recipe(recipe):
    """``view2_batch_augments`` around the classifier's own preprocessor:
    view 1 keeps Mixup/CutMix exactly, view 2 gets the batch colour (here
    grayscale on every image), a training step runs."""
    from cds_mm.models.data_preprocessors import MultiViewClsDataPreprocessor
    plain, cds = build_plain(recipe), build_cds(recipe)
    inner = cds.classifier.data_preprocessor
    cds.data_preprocessor = MultiViewClsDataPreprocessor(
        inner,
        view2_batch_augments=dict(
            type='BatchPhotometric',
            transforms=[
                dict(type='RandomGrayscale', prob=1.0, keep_channels=True)
            ]))
    cds.to('cpu')  # BaseModel.to() visits every submodule's apply()
    items = _items()
    got = _seeded(lambda: cds.data_preprocessor(
        pseudo_collate(copy.deepcopy(items)), True))
    ref = _seeded(lambda: plain.data_preprocessor(
        pseudo_collate(_single_view(items, 0)), True))
    view1, view2 = got['inputs']
    torch.testing.assert_close(view1, ref['inputs'])
    raw = view2 * inner.std + inner.mean  # before normalisation
    torch.testing.assert_close(raw[:, 0], raw[:, 1], atol=1e-3, rtol=0)
    torch.testing.assert_close(raw[:, 0], raw[:, 2], atol=1e-3, rtol=0)
    clean = cds.data_preprocessor(pseudo_collate(copy.deepcopy(items)), False)
    assert clean['inputs'][1][:, 0].ne(clean['inputs'][1][:, 2]).any()

    optim = OptimWrapper(torch.optim.SGD(cds.parameters(), lr=0.05))
    log_vars = cds.train_step(pseudo_collate(_items(1)), optim)
    assert all(torch.isfinite(v) for v in log_vars.values()), log_vars


# ------------------------------------------- every documented way to build it
GRAY = dict(
    type='BatchPhotometric',
    transforms=[dict(type='RandomGrayscale', prob=1.0, keep_channels=True)])


def _build_path(recipe, path):
    """CDSClassifier built as each documented path builds it.

    - ``runner``: the top-level ``data_preprocessor`` handed to the model
      (untyped), as the Runner does;
    - ``readme``: ``classifier.data_preprocessor = _base_.data_preprocessor``
      and no model-level one (README, "Add CDS to a model you already train");
    - ``typed``: ``model.data_preprocessor=dict(type=
      'MultiViewClsDataPreprocessor', data_preprocessor=<the classifier's
      preprocessor config>, view2_batch_augments=...)`` (README and
      ``_base_/cds/contrast_colour_batch.py``).
    """
    if path == 'runner':
        return build_cds(recipe)
    model, preprocessor = copy.deepcopy(recipe)
    kwargs = dict(
        cds_head=dict(
            type='CDSHead',
            taps=TAPS,
            projector=dict(
                type='MLPProjector', hid_channels=32, out_channels=16)),
        probe_size=32)
    if path == 'readme':
        model['data_preprocessor'] = preprocessor
    else:
        kwargs['data_preprocessor'] = dict(
            type='MultiViewClsDataPreprocessor',
            data_preprocessor=preprocessor,
            view2_batch_augments=GRAY)
    torch.manual_seed(0)
    return build_cls(dict(type='CDSClassifier', classifier=model, **kwargs))


@pytest.mark.parametrize('path', ['runner', 'readme', 'typed'])
def test_every_documented_path_keeps_mixup_and_cutmix(recipe, path):
    plain, cds = build_plain(recipe), _build_path(recipe, path)
    inner = cds.data_preprocessor.data_preprocessor
    assert _augments(inner) == _augments(plain.data_preprocessor)
    assert _augments(inner)[0] == [('Mixup', 0.8), ('CutMix', 1.0)]
    items = _items()
    got = _seeded(lambda: cds.data_preprocessor(
        pseudo_collate(copy.deepcopy(items)), True))
    ref = _seeded(lambda: plain.data_preprocessor(
        pseudo_collate(_single_view(items, 0)), True))
    # view 1 is the plain recipe's batch, mixed images and soft scores alike
    torch.testing.assert_close(got['inputs'][0], ref['inputs'])
    torch.testing.assert_close(
        torch.stack([s.gt_score for s in got['data_samples']]),
        torch.stack([s.gt_score for s in ref['data_samples']]))
    assert any(s.batch_augmented for s in got['data_samples'])


def test_a_typed_preprocessor_without_the_augments_is_refused(recipe):
    model, preprocessor = copy.deepcopy(recipe)
    with pytest.raises(
            ValueError,
            match='model.classifier.train_cfg.augments'
            r'.*would be dropped'):
        build_cls(
            dict(
                type='CDSClassifier',
                classifier=model,
                data_preprocessor=dict(
                    preprocessor, type='ClsDataPreprocessor'),
                cds_head=dict(type='CDSHead', taps=TAPS),
                probe_size=32))


def test_semi_guard_reads_the_preprocessor_that_runs(recipe):
    """Batch augments given to the running preprocessor only (the classifier
    recipe has none) are refused too."""
    model, preprocessor = copy.deepcopy(recipe)
    model.pop('train_cfg')
    preprocessor['batch_augments'] = dict(
        augments=[dict(type='Mixup', alpha=0.8)])
    with pytest.raises(ValueError, match='would mix labelled and unlabelled'):
        build_cls(
            dict(
                type='SemiCDSClassifier',
                classifier=model,
                data_preprocessor=dict(
                    type='MultiViewClsDataPreprocessor',
                    data_preprocessor=preprocessor),
                cds_head=dict(type='CDSHead', taps=TAPS),
                probe_size=32))
