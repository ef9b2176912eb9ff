"""fit_temperature / scale_scores / temperature_nll, and ECEMetric's
``temperature`` option.

Synthetic logits ``z`` with labels drawn from ``softmax(z / T_true)``: the
fitted temperature must come back as ``T_true`` (within the sampling error of
``n`` labels), and 1 when the labels come from ``softmax(z)`` itself.
"""
import numpy as np
import pytest
import torch

from cds_mm.evaluation import fit_temperature, scale_scores
from cds_mm.evaluation.metrics import ECEMetric
from cds_mm.evaluation.temperature_scaling import (scores_to_logits,
                                                   temperature_nll)


def _synthetic(n, c, t_true, seed, scale=4.0):
    """Logits ``scale * N(0, 1)`` and labels sampled from
    ``softmax(z / t_true)``."""
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    labels = torch.multinomial((z / t_true).softmax(1), 1, generator=g)[:, 0]
    return z, labels


def _grid_min(z, labels, lo=0.05, hi=20.0, num=4001):
    """Brute-force reference: the temperature of least NLL on a log grid."""
    grid = np.geomspace(lo, hi, num)
    nll = [temperature_nll(z, labels, float(t)) for t in grid]
    return float(grid[int(np.argmin(nll))]), min(nll)


@pytest.mark.parametrize('t_true', [2.5, 0.7])
@pytest.mark.parametrize('seed', [0, 1])
def test_recovers_a_known_temperature(t_true, seed):
    z, labels = _synthetic(20000, 10, t_true, seed)
    # the sampling error of T-hat at n = 20000 is about 1 % (seeds 0-9: all
    # within 1.8 % at t_true 2.5 and 0.7); 3 % is outside it and far from
    # the T = 1 of a fit that does nothing
    assert fit_temperature(z, labels) == pytest.approx(t_true, rel=0.03)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_calibrated_logits_give_one(seed):
    z, labels = _synthetic(20000, 10, 1.0, seed)
    assert fit_temperature(z, labels) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_is_the_least_nll_in_bounds_and_never_worse_than_one(seed):
    # labels unrelated to the logits: a badly specified model
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(500, 5, generator=g, dtype=torch.float64)
    labels = torch.where(
        torch.rand(500, generator=g) < 0.6, z.argmax(1),
        torch.randint(0, 5, (500, ), generator=g))
    t = fit_temperature(z, labels)
    t_grid, nll_grid = _grid_min(z, labels)
    assert t == pytest.approx(t_grid, rel=2e-3)  # the grid's spacing
    assert temperature_nll(z, labels, t) <= nll_grid + 1e-12
    assert temperature_nll(z, labels, t) <= temperature_nll(z, labels, 1.0)


def test_fitting_scores_equals_fitting_logits():
    """log(softmax(z)) is z minus a per-sample constant: same temperature."""
    z, labels = _synthetic(5000, 7, 2.5, 3)
    scores = z.float().softmax(1)  # what an mmpretrain head hands out
    assert fit_temperature(scores_to_logits(scores), labels) == \
        pytest.approx(fit_temperature(z, labels), rel=1e-5)


def test_scale_scores_is_softmax_of_scaled_logits():
    z, _ = _synthetic(64, 10, 1.0, 4)
    got = scale_scores(z.float().softmax(1), 2.5)
    torch.testing.assert_close(got, (z / 2.5).softmax(1), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        scale_scores(z.softmax(1), 1.0), z.softmax(1), rtol=0, atol=1e-12)
    assert torch.equal(got.argmax(1), z.argmax(1))


def test_bounds_and_ties():
    # every sample right with a margin: the NLL falls towards T -> 0
    z = torch.tensor([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    assert fit_temperature(z, labels, bounds=(0.1, 10.0)) == \
        pytest.approx(0.1, rel=1e-6)
    # every sample wrong: towards uniform, T -> infinity
    assert fit_temperature(z, 1 - labels, bounds=(0.1, 10.0)) == \
        pytest.approx(10.0, rel=1e-6)
    # constant logits: any T is as good, T = 1 is kept
    assert fit_temperature(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])) \
        == 1.0


@pytest.mark.parametrize(
    'logits, labels, match', [
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), 'labels'),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 'logits'),
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), 'logits'),
        (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), 'logits'),
        (torch.zeros(2, 3), torch.tensor([0, 3]), r'labels must be in \[0, 3'),
        (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), 'labels'),
        (torch.tensor([[0.0, float('-inf')]]), torch.tensor([0]), 'logits'),
    ],
    ids=['n-mismatch', 'empty', '1d', 'one-class', 'range', 'float', 'inf'])
def test_bad_input_names_the_argument(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, labels)


@pytest.mark.parametrize('bounds', [(0.0, 2.0), (2.0, 1.0), (1.0, 1.0)])
def test_bad_bounds(bounds):
    with pytest.raises(ValueError, match='bounds'):
        fit_temperature(torch.zeros(2, 2), torch.tensor([0, 1]), bounds)


@pytest.mark.parametrize('t', [0, -1.0, float('nan'), float('inf'), True])
def test_bad_temperature(t):
    with pytest.raises(ValueError, match='temperature'):
        scale_scores(torch.ones(1, 2) / 2, t)
    with pytest.raises(ValueError, match='temperature'):
        ECEMetric(temperature=t)


def _ece(scores, labels, **kwargs):
    metric = ECEMetric(save_diagram=False, **kwargs)
    metric.process(None, [
        dict(pred_score=s, gt_label=torch.tensor([y]))
        for s, y in zip(scores, labels)
    ])
    return metric.evaluate(len(labels))


def test_ece_metric_temperature_equals_ece_of_scaled_logits():
    z, labels = _synthetic(4000, 10, 2.5, 5)
    scores = z.float().softmax(1)
    t = fit_temperature(scores_to_logits(scores), labels)
    scaled = _ece(scores, labels, temperature=t)
    reference = _ece((z / t).float().softmax(1), labels)
    assert scaled['calib/ece'] == pytest.approx(
        reference['calib/ece'], abs=1e-4)
    assert scaled['calib/accuracy'] == reference['calib/accuracy']
    # overconfident logits (labels from z / 2.5): T fixes most of the gap
    before = _ece(scores, labels)
    assert before['calib/accuracy'] == scaled['calib/accuracy']
    assert before['calib/ece'] > 10 and scaled['calib/ece'] < 2


def test_ece_metric_from_config_with_temperature():
    from mmpretrain.registry import METRICS
    metric = METRICS.build(dict(type='ECEMetric', temperature=2))
    assert metric.temperature == 2.0 and isinstance(metric.temperature, float)
