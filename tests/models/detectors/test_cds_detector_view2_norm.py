"""CDSDetector's view2_norm: the BatchNorm policy of view 2, the same option
and meaning as CDSClassifier's."""
import copy

import pytest
import torch
from test_cds_detector import build, demo_cfg, two_view_batch  # noqa: F401

from cds_mm.models.detectors import cds_detector


def _running(module):
    return {
        k: v.clone()
        for k, v in module.state_dict().items()
        if k.endswith(('running_mean', 'running_var'))
    }


@pytest.mark.parametrize('policy', ['split', 'split_tracked', 'joint'])
def test_policies_set_the_running_statistics(demo_cfg, policy):  # noqa: F811
    """'split': view 1's pass alone moves them; 'split_tracked': view 1's,
    then view 2's backbone + neck pass; 'joint': one 2N pass."""
    model = build(demo_cfg, view2_norm=policy).train()
    ref = copy.deepcopy(model.detector)
    data = two_view_batch(model, num_items=(3, 2))
    inputs = data['inputs']
    losses = model.loss(inputs, data['data_samples'])
    assert torch.isfinite(
        sum(v if torch.is_tensor(v) else sum(v) for v in losses.values()))
    if policy == 'joint':
        ref.extract_feat(torch.cat([inputs['main'], inputs['cds']]))
    else:
        ref.extract_feat(inputs['main'])
        if policy == 'split_tracked':
            ref.extract_feat(inputs['cds'])
    got, want = _running(model.detector), _running(ref)
    assert len(want) == 2 * 20  # every BatchNorm of the ResNet-18
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=key)


def test_joint_taps_hold_each_views_half(demo_cfg):  # noqa: F811
    """Under 'joint' the detector's own heads see view 1's features and the
    CDS heads get view 1's and view 2's halves of the 2N pass."""
    model = build(demo_cfg, view2_norm='joint').eval()  # no batch coupling
    data = two_view_batch(model, num_items=(3, 2))
    split = build(demo_cfg, view2_norm='split').eval()
    torch.manual_seed(1)  # the same anchor and proposal samples
    a = model.loss(data['inputs'], copy.deepcopy(data['data_samples']))
    torch.manual_seed(1)
    b = split.loss(data['inputs'], copy.deepcopy(data['data_samples']))
    for key in ('loss_cds_s0', 'loss_cds_s3', 'loss_cds_inst_s0',
                'loss_rpn_cls'):
        va, vb = a[key], b[key]
        va = va if torch.is_tensor(va) else sum(va)
        vb = vb if torch.is_tensor(vb) else sum(vb)
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5, msg=key)
    assert 'extract_feat' not in vars(model.detector)  # patch removed


def test_deprecated_view2_norm_stats_still_works_and_warns(
        demo_cfg, monkeypatch):  # noqa: F811
    logs = []
    monkeypatch.setattr(cds_detector, 'print_log',
                        lambda msg, **kw: logs.append(msg))
    assert build(demo_cfg, view2_norm_stats=True).view2_norm == \
        'split_tracked'
    assert build(demo_cfg, view2_norm_stats=False).view2_norm == 'split'
    assert build(demo_cfg).view2_norm == 'split'  # the default so far
    assert len(logs) == 2 and all('deprecated' in m for m in logs)
    with pytest.raises(ValueError, match='set only view2_norm'):
        build(demo_cfg, view2_norm_stats=True, view2_norm='joint')
    with pytest.raises(ValueError, match='model.view2_norm must be one of'):
        build(demo_cfg, view2_norm='own')
