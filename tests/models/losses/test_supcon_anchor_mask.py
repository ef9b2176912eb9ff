"""SupConLoss(anchor_mask=...): some rows are anchors, all stay in the
denominator (FSCE's IoU-thresholded proposals)."""
import math

import pytest
import torch
import torch.nn.functional as F

from cds_mm.models.losses import SupConLoss


def _loop_masked(z, labels, anchors, t):
    """Line-by-line SupCon over V views where only ``anchors`` rows anchor.

    Shapes: z (N, V, D) normalised; labels (N,); anchors (N,) bool.
    """
    n, v, _ = z.shape
    rows = [(i, k) for i in range(n) for k in range(v)]
    total, count = 0.0, 0
    for a, (i, k) in enumerate(rows):
        if not anchors[i]:
            continue
        others = [b for b in range(len(rows)) if b != a]
        sim = [float(z[i, k] @ z[rows[b][0], rows[b][1]]) / t for b in others]
        denom = math.log(sum(math.exp(s) for s in sim))
        pos = [
            s for b, s in zip(others, sim) if labels[rows[b][0]] == labels[i]
        ]
        if not pos:
            continue
        total -= sum(s - denom for s in pos) / len(pos)
        count += 1
    return total / max(count, 1)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(7, 2, 5, generator=g), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 3])  # 3: background
    anchors = torch.tensor([1, 0, 1, 1, 0, 0, 0]).bool()
    got = SupConLoss(temperature=0.2)(z, labels, anchors)
    assert got.item() == pytest.approx(
        _loop_masked(z, labels, anchors, 0.2), rel=1e-5)
    # non-anchors still count: dropping their rows changes the value
    keep = anchors | (labels == 0)
    dropped = SupConLoss(temperature=0.2)(z[keep], labels[keep], anchors[keep])
    assert abs(dropped.item() - got.item()) > 1e-3


def test_all_anchors_equals_no_mask():
    g = torch.Generator().manual_seed(3)
    z = F.normalize(torch.randn(6, 2, 4, generator=g), dim=-1)
    labels = torch.tensor([0, 1, 1, 2, 0, 3])
    loss = SupConLoss(temperature=0.5)
    torch.testing.assert_close(
        loss(z, labels, torch.ones(6, dtype=torch.bool)), loss(z, labels))


def test_closed_form_background_in_denominator():
    # rows A, B (label 0) and C (background, label 1), identical orthogonal
    # views; only A anchors. A's positives: its other view (logit 1/t) and
    # both views of B (logit 0); the denominator adds C's two views (0).
    t = 0.2
    z = torch.eye(3)[:, None].repeat(1, 2, 1)
    got = SupConLoss(temperature=t)(z, torch.tensor([0, 0, 1]),
                                    torch.tensor([True, False, False]))
    want = math.log(math.exp(1 / t) + 4) - (1 / t) / 3
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_no_anchor_gives_connected_zero():
    z = F.normalize(torch.randn(4, 2, 3), dim=-1).requires_grad_()
    loss = SupConLoss()(z, torch.tensor([0, 0, 1, 1]),
                        torch.zeros(4, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None and not z.grad.any()


def test_bad_mask_shape_raises():
    with pytest.raises(ValueError, match='anchor_mask must have shape'):
        SupConLoss()(torch.randn(4, 2, 3), torch.zeros(4), torch.ones(3))
