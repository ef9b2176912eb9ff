"""ProposalCDSHead on given features: the loss value, weights, bad input."""
import math

import pytest
import torch
import torch.nn as nn

from cds_mm.models.heads import ProposalCDSHead


def make_head(**kwargs):
    torch.manual_seed(0)
    cfg = dict(in_channels=3)
    cfg.update(kwargs)
    return ProposalCDSHead(**cfg)


def three_proposals():
    """A: label 0, IoU 0.9; B: label 0, IoU 0.5; C: background (label 1).

    Identical orthogonal views, so the logits are 1/t (same proposal) or 0.
    """
    feats = torch.eye(3)
    return feats, feats.clone(), torch.tensor([0, 0, 1]), torch.tensor(
        [0.9, 0.5, 0.0])


def test_hand_computed_value():
    head = make_head()
    head.projector = nn.Identity()  # the features are the projections
    got = head.loss(*three_proposals())['loss_cds_proposal']
    # only A's two views anchor (IoU >= 0.8); positives: A's other view
    # (1/t) and B's two views (0); denominator adds C's two views (0)
    t = 0.2
    want = 0.5 * (math.log(math.exp(1 / t) + 4) - (1 / t) / 3)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_iou_threshold_picks_the_anchors():
    head = make_head(iou_thr=0.4)  # now B anchors too
    head.projector = nn.Identity()
    got = head.loss(*three_proposals())['loss_cds_proposal']
    # B's rows: positives A (2 rows, 0) and its other view (1/t), the same
    # sums as A's, so the mean is unchanged; C (IoU 0) never anchors
    t = 0.2
    want = 0.5 * (math.log(math.exp(1 / t) + 4) - (1 / t) / 3)
    assert got.item() == pytest.approx(want, rel=1e-6)
    head.iou_thr = 0.95  # no anchor at all
    zero = head.loss(*three_proposals())['loss_cds_proposal']
    assert zero.item() == 0.0


def test_default_projector_is_fsce_mlp():
    head = make_head(in_channels=16)
    linears = [m for m in head.projector.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 16),
                                                                  (16, 128)]
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in head.projector.modules())
    assert head.loss_module.temperature == 0.2
    assert head.loss_weight == 0.5 and head.iou_thr == 0.8


def test_weight_scale_and_gradient():
    head = make_head(in_channels=8)
    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(6, 8, generator=g, requires_grad=True)
    f2 = torch.randn(6, 8, generator=g)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    ious = torch.tensor([0.9, 0.85, 1.0, 0.3, 0.0, 0.0])
    full = head.loss(f1, f2, labels, ious)['loss_cds_proposal']
    head.set_weight_scale(0.5)
    half = head.loss(f1, f2, labels, ious)['loss_cds_proposal']
    torch.testing.assert_close(half, 0.5 * full)
    half.backward()
    assert f1.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in head.parameters())


def test_empty_batch_touches_every_parameter():
    head = make_head(in_channels=8)
    empty = torch.zeros(0, 8, requires_grad=True)
    loss = head.loss(empty, empty, torch.zeros(0, dtype=torch.long),
                     torch.zeros(0))['loss_cds_proposal']
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=0), 'proposal_head.in_channels'),
    (dict(iou_thr=0.0), 'proposal_head.iou_thr'),
    (dict(iou_thr=1.5), 'proposal_head.iou_thr'),
    (dict(loss_weight=-1.0), 'proposal_head.loss_weight'),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_head(**kwargs)


def test_bad_shapes_raise():
    head = make_head(in_channels=3)
    f, f2, labels, ious = three_proposals()
    with pytest.raises(ValueError, match='proposal_head.in_channels=3'):
        head.loss(torch.zeros(3, 4), f2, labels, ious)
    with pytest.raises(ValueError, match='labels and ious'):
        head.loss(f, f2, labels[:2], ious)
