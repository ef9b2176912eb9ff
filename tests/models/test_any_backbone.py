"""CDS on backbones other than ResNet, by config alone: taps by module name,
channels probed.

Each case wraps an mmpretrain ``ImageClassifier`` (MobileNetV2 at 1/4 width, or
a tiny custom ConvNeXt) in ``CDSClassifier`` without ``in_channels``, checks
the probed channels against the backbone's known widths, then runs 3 SGD steps
through ``train_step`` (data preprocessor, loss, backward, update) on one fixed
two-view batch: every loss is finite, the total changes from step to step, and
the backbone and every projector move.
"""
import copy
import math

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import cds_mm  # noqa: F401

PREPROCESSOR = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
BACKBONES = {
    # (classifier, taps, channels of the tapped modules, image side)
    'mobilenet_v2': (
        dict(
            type='ImageClassifier',
            backbone=dict(type='MobileNetV2', widen_factor=0.25),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=1280),
            data_preprocessor=PREPROCESSOR),
        ['backbone.layer2', 'backbone.layer4', 'backbone.layer7'],
        [8, 16, 80],  # make_divisible(24, 32, 320 * 0.25, 8)
        64),
    'convnext': (dict(
        type='ImageClassifier',
        backbone=dict(
            type='ConvNeXt',
            arch=dict(depths=[1, 1, 1, 1], channels=[16, 32, 48, 64]),
            drop_path_rate=0.0),
        head=dict(type='LinearClsHead', num_classes=4, in_channels=64),
        data_preprocessor=PREPROCESSOR),
                 [f'backbone.stages.{i}' for i in range(4)], [16, 32, 48,
                                                              64], 32),
}
PROJECTORS = {
    'sepconv': dict(type='SepConvProjector'),
    'mlp': dict(type='MLPProjector', hid_channels=32, out_channels=16),
}


def build(cfg):
    """Build in the mmpretrain scope whatever default scope other tests left
    behind."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def _batch(n, side, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [
        torch.randint(
            0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)
        for _ in range(2)
    ]
    labels = [0, 1, 2, 3, 0, 1, 2, 3][:n]
    return dict(
        inputs=views,
        data_samples=[DataSample().set_gt_label(y) for y in labels])


@pytest.mark.parametrize('projector', sorted(PROJECTORS))
@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_cds_trains_on_a_non_resnet_backbone(backbone, projector):
    classifier, taps, channels, side = BACKBONES[backbone]
    torch.manual_seed(0)
    # no in_channels
    head = dict(type='CDSHead', taps=taps, projector=PROJECTORS[projector])
    model = build(
        dict(
            type='CDSClassifier',
            classifier=copy.deepcopy(classifier),
            cds_head=head,
            probe_size=side))
    assert model.cds_head.in_channels == channels
    if projector == 'sepconv':  # every stage projected to the last tap's width
        assert [p.out_channels for p in model.cds_head.projectors
                ] == [channels[-1]] * len(taps)

    optim = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    totals = []  # the loss train_step hands the optimizer
    update_params = optim.update_params
    optim.update_params = lambda loss, **kw: totals.append(float(
        loss)) or update_params(loss, **kw)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    data = _batch(8, side)
    cds_keys = {f'loss_cds_s{i}' for i in range(len(taps))}
    for _ in range(3):
        log_vars = model.train_step(copy.deepcopy(data), optim)
        assert cds_keys <= set(log_vars) and 'loss' in log_vars, sorted(
            log_vars)
        assert all(torch.isfinite(v) for v in log_vars.values()), log_vars
        assert all(log_vars[k] > 0 for k in cds_keys), log_vars
    assert len(totals) == 3 and all(map(math.isfinite, totals)), totals
    assert len(set(totals)) == 3, totals

    moved = {
        k
        for k, v in model.named_parameters() if not torch.equal(v, before[k])
    }
    assert any(k.startswith('classifier.backbone.') for k in moved)
    assert any(k.startswith('classifier.head.') for k in moved)
    for i, proj in enumerate(model.cds_head.projectors):
        names = [
            f'cds_head.projectors.{i}.{k}' for k, _ in proj.named_parameters()
        ]
        if names:  # a SepConv projector on the last stage is pooling only
            assert set(names) & moved, f'projector {i} did not train'
    # taps leave no hook behind
    assert not any(m._forward_hooks for m in model.modules())


def test_logged_loss_is_the_optimised_total():
    classifier, taps, _, side = BACKBONES['convnext']
    torch.manual_seed(0)
    model = build(
        dict(
            type='CDSClassifier',
            classifier=copy.deepcopy(classifier),
            cds_head=dict(type='CDSHead', taps=taps),
            probe_size=side))
    data = model.data_preprocessor(_batch(8, side), True)
    losses = model(**data, mode='loss')
    task = sum(
        float(v) for k, v in losses.items() if not k.startswith('loss_cds'))
    # what train_step backpropagates and logs
    total, log_vars = model.parse_losses(losses)
    # the CDS terms are in the optimised total
    assert float(total) > task
    assert float(log_vars['loss']) == pytest.approx(float(total))
