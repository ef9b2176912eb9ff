"""CDSDetector's contrastive losses against a direct, line-by-line computation
from the tapped features, and the gradients they send to every head
parameter."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_cds_detector import build, demo_cfg, two_view_batch  # noqa: F401
from torchvision.ops import roi_align


def loop_supcon(z1, z2, ids, t):
    """SupCon (Khosla et al. 2020, eq. 2) over 2 views, one anchor at a time;
    ``ids`` = range(N) gives SimCLR / NT-Xent (Chen et al. 2020)."""
    z, y = torch.cat([z1, z2]).double(), list(ids) * 2
    total, anchors = 0.0, 0
    for i in range(len(z)):
        others = [k for k in range(len(z)) if k != i]
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in others)
        pos = [p for p in others if y[p] == y[i]]
        if pos:
            total -= sum(
                float(z[i] @ z[p]) / t - math.log(denom)
                for p in pos) / len(pos)
            anchors += 1
    return total / anchors


def _record(model, names):
    """Every output of the tapped modules, in call order (view 1, view 2)."""
    outs = {n: [] for n in names}
    for n in names:
        model.detector.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: outs[n].append(o.detach()))
    return outs


def test_losses_equal_a_direct_computation_and_reach_every_head_weight(
        demo_cfg):  # noqa: F811
    model = build(demo_cfg).train()
    data = two_view_batch(model, num_items=(3, 2))
    image_taps, inst_taps = model.cds_head.taps, model.instance_head.taps
    outs = _record(model, list(dict.fromkeys(image_taps + inst_taps)))
    losses = model.loss(data['inputs'], data['data_samples'])
    t = model.cds_head.loss_module.temperature
    assert t == 0.07
    n = data['inputs']['main'].shape[0]

    # image level: SimCLR between the two views of each image, per level
    for i, name in enumerate(image_taps):
        f1, f2 = outs[name]  # the view-1 pass of detector.loss, then view 2
        with torch.no_grad():
            z = F.normalize(
                model.cds_head.projectors[i](torch.cat([f1, f2])), dim=1)
        want = model.cds_head.loss_weights[i] * loop_supcon(
            z[:n], z[n:], range(n), t)
        got = losses[f'loss_cds_s{i}'].item()
        assert abs(got - want) <= 1e-4 * abs(want), (name, got, want)

    # instance level: SupCon over the ground-truth boxes, same box both views
    head = model.instance_head
    samples = data['data_samples']['main']
    boxes = [s.gt_instances.bboxes.float() for s in samples]
    labels = torch.cat([s.gt_instances.labels for s in samples]).tolist()
    ids = labels if len(set(labels)) > 1 else range(len(labels))
    size = data['inputs']['main'].shape[-1]
    for i, name in enumerate(inst_taps):
        f1, f2 = outs[name]
        scale = f1.shape[-1] / size
        with torch.no_grad():
            r = [
                roi_align(f, boxes, head.roi_size, scale, 2, True)
                for f in (f1, f2)
            ]
            z = F.normalize(head.projectors[i](torch.cat(r)), dim=1)
        m = len(labels)
        want = head.loss_weights[i] * loop_supcon(z[:m], z[m:], ids, t)
        got = losses[f'loss_cds_inst_s{i}'].item()
        assert m == 5 and abs(got - want) <= 1e-4 * abs(want), (got, want)

    cds = sum(v for k, v in losses.items() if k.startswith('loss_cds'))
    cds.backward()
    for head_name in ('cds_head', 'instance_head'):
        for name, p in getattr(model, head_name).named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (head_name,
                                                                   name)


def test_detector_pairs_boxes_by_the_instance_ids_of_both_branches(
        demo_cfg):  # noqa: F811
    """gt_instances.instance_ids of both branches reach InstanceCDSHead: a
    branch listing its boxes in another order gives the same loss; without
    ids those boxes are refused, not contrasted mispaired."""
    model = build(demo_cfg).eval()
    data = two_view_batch(model, num_items=(3, 2), same_views=True)

    def inst_loss(samples):
        torch.manual_seed(0)
        return model.loss(data['inputs'],
                          copy.deepcopy(samples))['loss_cds_inst_s0']

    ref = inst_loss(data['data_samples'])
    samples = copy.deepcopy(data['data_samples'])
    for a, b in zip(samples['main'], samples['cds']):
        m = len(a.gt_instances)
        a.gt_instances.instance_ids = torch.arange(m)
        order = torch.arange(m).flip(0)
        b.gt_instances = b.gt_instances[order]
        b.gt_instances.instance_ids = order
    torch.testing.assert_close(inst_loss(samples), ref)
    for s in samples['main'] + samples['cds']:
        del s.gt_instances.instance_ids
    with pytest.raises(ValueError, match='image 0 of the batch'):
        inst_loss(samples)
