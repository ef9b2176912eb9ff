import math

import pytest
import torch

from cds_mm.evaluation.metrics import ECEMetric


def _sample(conf, pred, gt, num_classes=10):
    """mmpretrain-style DataSample dict: ``conf`` on class ``pred``, the rest
    spread evenly."""
    score = torch.full((num_classes, ), (1 - conf) / (num_classes - 1))
    score[pred] = conf
    return dict(pred_score=score, gt_label=torch.tensor([gt]))


def _evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_hand_computed_six_samples():
    # 5 bins: (0, .2] (.2, .4] (.4, .6] (.6, .8] (.8, 1]
    samples = [
        # bin 1: 1 of 2 right
        _sample(0.30, 1, 1),
        _sample(0.35, 1, 2),
        # bin 2: 1 of 1 right
        _sample(0.50, 3, 3),
        # bin 4: 2 of 3 right
        _sample(0.90, 4, 4),
        _sample(0.90, 5, 5),
        _sample(0.95, 6, 0)
    ]
    # bin 1: acc 1/2, conf (0.30 + 0.35) / 2 = 0.325, gap 0.175, weight 2/6
    # bin 2: acc 1,   conf 0.5,                       gap 0.5,   weight 1/6
    # bin 4: acc 2/3, conf (0.9 + 0.9 + 0.95) / 3,    gap 0.25,  weight 3/6
    # = 26.667
    expected_ece = 100 * (2 / 6 * 0.175 + 1 / 6 * 0.5 + 3 / 6 * 0.25)
    metrics = _evaluate(ECEMetric(num_bins=5, save_diagram=False), samples)
    assert set(metrics) == {'calib/ece', 'calib/mce', 'calib/accuracy'}
    assert metrics['calib/ece'] == pytest.approx(expected_ece, abs=1e-4)
    assert metrics['calib/mce'] == pytest.approx(50.0, abs=1e-4)  # bin 2's gap
    assert metrics['calib/accuracy'] == pytest.approx(100 * 4 / 6, abs=1e-4)


def _binary_samples(n, seed, shift):
    """Top-1 confidence c ~ U(0.5, 1) on class 0; class 0 is right with
    probability c - shift."""
    g = torch.Generator().manual_seed(seed)
    conf = 0.5 + 0.5 * torch.rand(n, generator=g)
    right = torch.rand(n, generator=g) < conf - shift
    return [
        dict(
            pred_score=torch.stack([c, 1 - c]),
            gt_label=torch.tensor([0 if r else 1]))
        for c, r in zip(conf, right)
    ]


@pytest.mark.parametrize('n', [2000, 20000])
def test_calibrated_is_near_zero_and_miscalibrated_is_not(n):
    bins = 15
    # per bin E|acc_k - conf_k| <= sqrt(1/4 / n_k), so E[ECE] <= 50 * sqrt(bins
    # / n) percent (Cauchy-Schwarz over the bins); allow twice that
    tol = 2 * 50 * math.sqrt(bins / n)
    calibrated = _evaluate(
        ECEMetric(bins, save_diagram=False), _binary_samples(n, 0, 0.0))
    assert 0.0 <= calibrated['calib/ece'] < tol
    over = _evaluate(
        ECEMetric(bins, save_diagram=False), _binary_samples(n, 1, 0.1))
    # 0.1 too confident everywhere
    assert over['calib/ece'] == pytest.approx(10.0, abs=tol)


def test_confident_but_wrong_is_100():
    samples = [
        dict(
            pred_score=torch.tensor([1.0, 0.0, 0.0]),
            gt_label=torch.tensor([2]))
    ] * 8
    metrics = _evaluate(ECEMetric(save_diagram=False), samples)
    assert metrics['calib/ece'] == pytest.approx(100.0)
    assert metrics['calib/mce'] == pytest.approx(100.0)
    assert metrics['calib/accuracy'] == 0.0


@pytest.mark.parametrize('num_bins', [0, -3])
def test_num_bins_validation(num_bins):
    with pytest.raises(ValueError, match='num_bins'):
        ECEMetric(num_bins=num_bins)


def test_bad_samples_raise():
    metric = ECEMetric(save_diagram=False)
    with pytest.raises(ValueError, match='pred_score'):
        metric.process(
            None,
            [dict(pred_label=torch.tensor([0]), gt_label=torch.tensor([0]))])
    with pytest.raises(ValueError, match='gt_label'):
        metric.process(None, [
            dict(
                pred_score=torch.tensor([0.6, 0.4]),
                gt_label=torch.tensor([0, 1]))
        ])


def test_diagram_written_to_out_dir(tmp_path):
    out_dir = tmp_path / 'diagrams'
    metric = ECEMetric(num_bins=5, out_dir=str(out_dir), prefix='val_calib')
    _evaluate(metric, [_sample(0.3, 1, 1), _sample(0.9, 2, 0)])
    png = out_dir / 'val_calib_reliability_diagram.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_diagram_falls_back_to_visualizer_save_dir(tmp_path):
    from mmengine.visualization import Visualizer
    Visualizer.get_instance(
        'test_ece_metric_vis',
        vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(tmp_path))
    _evaluate(ECEMetric(num_bins=5), [_sample(0.3, 1, 1)])
    assert (tmp_path / 'vis_data' / 'calib_reliability_diagram.png').is_file()


def test_build_from_mmpretrain_registry():
    from mmpretrain.registry import METRICS
    metric = METRICS.build(dict(type='ECEMetric', num_bins=10))
    assert isinstance(
        metric,
        ECEMetric) and metric.num_bins == 10 and metric.prefix == 'calib'
