"""CDSDetector with a ProposalCDSHead on the demo's tiny Faster R-CNN."""
import copy
import os.path as osp

import mmdet
import pytest
import torch
from cds_test_utils import REPO_ROOT, build_det, load_tool
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from torchvision.ops import box_iou

import cds_mm  # noqa: F401
from cds_mm.models.heads import ProposalCDSHead

DEMO = osp.join(REPO_ROOT,
                'configs/demo/faster-rcnn_r18-w16_fpn_cds_shapes.py')
PROPOSAL = dict(
    type='ProposalCDSHead',
    projector=dict(
        type='MLPProjector', hid_channels=64, out_channels=32, norm_cfg=None))
export_plain = load_tool(osp.join(REPO_ROOT, 'tools', 'export_plain.py'))


@pytest.fixture(scope='module')
def demo_cfg():
    return Config.fromfile(DEMO).model


def build(cfg, **overrides):
    torch.manual_seed(0)
    cfg = copy.deepcopy(cfg)
    for key, value in overrides.items():
        cfg[key] = value
    return build_det(cfg).train()


def proposal_only(cfg, **overrides):
    return build(
        cfg,
        cds_head=None,
        instance_head=None,
        proposal_head=PROPOSAL,
        **overrides)


def two_view_batch(model, num_items=(3, 0), shift2=0.0):
    """Demo images; view 2 has its channels reversed (boxes kept), or its
    boxes moved by ``shift2`` pixels."""
    torch.manual_seed(1)
    packed = demo_mm_inputs(
        batch_size=len(num_items),
        image_shapes=(3, 96, 96),
        num_items=list(num_items),
        num_classes=3)
    samples2 = copy.deepcopy(packed['data_samples'])
    for s in samples2:
        s.gt_instances.bboxes = s.gt_instances.bboxes + shift2
    data = dict(
        inputs=dict(
            main=packed['inputs'], cds=[x.flip(0) for x in packed['inputs']]),
        data_samples=dict(main=packed['data_samples'], cds=samples2))
    return model.data_preprocessor(data, True)


def test_loss_reaches_shared_fcs_and_view2_stops_at_the_neck(demo_cfg):
    model = proposal_only(demo_cfg)
    assert model.taps is None and model.cds_head is None
    det = model.detector
    calls = dict(rpn=0, roi=0, bbox_head=0)

    def count(key):
        return lambda *a: calls.__setitem__(key, calls[key] + 1)

    det.rpn_head.register_forward_hook(count('rpn'))
    det.roi_head.bbox_head.register_forward_hook(count('bbox_head'))
    orig = det.roi_head.loss
    det.roi_head.loss = lambda *a, **k: count('roi')() or orig(*a, **k)
    data = two_view_batch(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    # view 2 never reaches the RPN, the RoI head's loss or its classifier
    assert calls == dict(rpn=1, roi=1, bbox_head=1)
    assert losses['loss_cds_proposal'].item() > 0
    losses['loss_cds_proposal'].backward()
    for fc in det.roi_head.bbox_head.shared_fcs:
        assert fc.weight.grad.abs().sum() > 0
    assert det.roi_head.bbox_head.fc_cls.weight.grad is None
    assert det.rpn_head.rpn_conv.weight.grad is None
    assert det.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.proposal_head.parameters())
    # nothing survives loss(): the class method and no hook
    assert 'bbox_loss' not in vars(det.roi_head)
    assert not any(m._forward_hooks for m in det.roi_head.bbox_head.modules()
                   if m is not det.roi_head.bbox_head)


def test_recorded_proposals_labels_ious_and_view2_path(demo_cfg):
    model = proposal_only(demo_cfg)
    det, head = model.detector, model.proposal_head
    data = two_view_batch(model)
    inputs, samples = data['inputs']['main'], data['data_samples']['main']
    necks = []
    extract = det.extract_feat
    det.extract_feat = lambda x: necks.append(extract(x)) or necks[-1]
    with head.record(det.roi_head) as record:
        det.loss(inputs, samples)
    results = record['sampling_results']
    f1, f2, labels, ious = head.contrast_inputs(record, det.roi_head, necks[0],
                                                samples, samples)
    # the view-2 path on view 1's own features gives the recorded features
    torch.testing.assert_close(f2, f1, rtol=1e-5, atol=1e-6)
    assert f1.shape == (sum(len(r.priors) for r in results), 128)
    n0 = len(results[0].priors)
    # image 0: its 3 boxes are proposals too (IoU 1, their labels)
    gt = results[0].pos_is_gt.bool()
    assert int(gt.sum()) == 3
    torch.testing.assert_close(ious[:n0][:len(gt)][gt], torch.ones(3))
    gt_ids = results[0].pos_assigned_gt_inds[gt]
    assert labels[:n0][:len(gt)][gt].tolist(
    ) == samples[0].gt_instances.labels[gt_ids].tolist()
    # every positive: the IoU with its own assigned box, some below 1
    pos = results[0].pos_priors
    gt_boxes = samples[0].gt_instances.bboxes[results[0].pos_assigned_gt_inds]
    want = box_iou(pos, gt_boxes).diagonal()
    torch.testing.assert_close(ious[:len(pos)], want)
    assert (want < 0.99).any() and not ious[len(pos):n0].any()
    # image 1 has no box: background only (label num_classes, IoU 0)
    assert set(labels[n0:].tolist()) == {3} and not ious[n0:].any()
    # view 1's own features carry the gradient to the shared fcs
    head.loss(f1, f2.detach(), labels, ious)['loss_cds_proposal'].backward()
    for fc in det.roi_head.bbox_head.shared_fcs:
        assert fc.weight.grad.abs().sum() > 0


def test_view2_that_moved_the_boxes_is_refused(demo_cfg):
    model = proposal_only(demo_cfg)
    data = two_view_batch(model, shift2=8.0)
    with pytest.raises(ValueError, match=r'proposal_head: image 0 .* moved'):
        model.loss(data['inputs'], data['data_samples'])
    assert 'bbox_loss' not in vars(model.detector.roi_head)


def test_batch_resized_view2_gets_scaled_proposals(demo_cfg):
    model = proposal_only(demo_cfg)
    data = two_view_batch(model)
    inputs, samples = data['inputs'], data['data_samples']
    samples2 = copy.deepcopy(samples['cds'])
    for s in samples2:  # view 2 at half size, boxes with it
        s.gt_instances.bboxes = s.gt_instances.bboxes / 2
        s.set_metainfo(dict(img_shape=(48, 48)))
    small = torch.nn.functional.interpolate(inputs['cds'], scale_factor=0.5)
    got = []
    model.proposal_head.view2_features = lambda r, f, priors: got.append(
        priors) or ProposalCDSHead.view2_features(r, f, priors)
    model.loss(
        dict(main=inputs['main'], cds=small),
        dict(main=samples['main'], cds=samples2))
    gt2 = samples2[0].gt_instances.bboxes
    assert any(torch.allclose(p, gt2[0]) for p in got[0][0])


def test_with_image_and_instance_heads(demo_cfg):
    model = build(demo_cfg, proposal_head=PROPOSAL)
    data = two_view_batch(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    keys = sorted(k for k in losses if k.startswith('loss_cds'))
    assert keys == ['loss_cds_inst_s0', 'loss_cds_proposal'
                    ] + [f'loss_cds_s{i}' for i in range(4)]
    total = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
    assert torch.isfinite(total)


def test_off_mode_builds_no_proposal_head(demo_cfg):
    model = proposal_only(demo_cfg, mode='off')
    assert model.proposal_head is None
    assert not any(k.startswith('proposal_head.') for k in model.state_dict())
    data = two_view_batch(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert not any(k.startswith('loss_cds') for k in losses)


def test_proposal_head_alone_satisfies_cds_mode(demo_cfg):
    model = proposal_only(demo_cfg)
    assert isinstance(model.proposal_head, ProposalCDSHead)
    assert model.proposal_head.in_channels == 128  # fc_out_channels


def test_detector_without_roi_head_is_refused():
    cfg = Config.fromfile(
        osp.join(
            osp.dirname(mmdet.__file__),
            '.mim/configs/retinanet/retinanet_r18_fpn_1x_coco.py'))
    detector = cfg.model
    detector.backbone.init_cfg = None
    with pytest.raises(ValueError, match=r'model\.proposal_head.*RetinaNet'):
        build_det(
            dict(
                type='CDSDetector', detector=detector, proposal_head=PROPOSAL))


def test_export_strips_the_head_and_loads_strict(demo_cfg):
    model = proposal_only(demo_cfg)
    state = model.state_dict()
    assert any(k.startswith('proposal_head.') for k in state)
    prefix, plain_sd = export_plain.split_state_dict(state)
    assert prefix == 'detector.'
    assert not any('proposal_head' in k for k in plain_sd)
    plain = build_det(copy.deepcopy(demo_cfg.detector))
    plain.load_state_dict(plain_sd, strict=True)
