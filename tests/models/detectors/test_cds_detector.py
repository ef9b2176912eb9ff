import copy
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope

import cds_mm  # noqa: F401

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO = osp.join(REPO, 'configs/demo/faster-rcnn_r18-w16_fpn_cds_shapes.py')


@pytest.fixture(scope='module')
def demo_cfg():
    init_default_scope('mmdet')
    return Config.fromfile(DEMO).model


def build(cfg, **overrides):
    torch.manual_seed(0)
    cfg = copy.deepcopy(cfg)
    for key, value in overrides.items():
        cfg[key] = value  # replace whole keys (update() would merge)
    return MODELS.build(cfg)


def two_view_batch(model, num_items=(3, 0), same_views=False):
    """Both views of demo images through the wrapper's data preprocessor."""
    packed = demo_mm_inputs(
        batch_size=len(num_items),
        image_shapes=(3, 96, 96),
        num_items=list(num_items),
        num_classes=3)
    view2 = [
        x.flip(0) if not same_views else x.clone() for x in packed['inputs']
    ]
    data = dict(
        inputs=dict(main=packed['inputs'], cds=view2),
        data_samples=dict(
            main=packed['data_samples'],
            cds=copy.deepcopy(packed['data_samples'])))
    return model.data_preprocessor(data, True)


def test_losses_heads_and_view2_stops_at_the_neck(demo_cfg):
    model = build(demo_cfg).train()
    data = two_view_batch(model)
    calls = dict(rpn=0, roi=0)
    model.detector.rpn_head.register_forward_hook(
        lambda *a: calls.__setitem__('rpn', calls['rpn'] + 1))
    orig = model.detector.roi_head.loss
    model.detector.roi_head.loss = lambda *a, **k: calls.__setitem__(
        'roi', calls['roi'] + 1) or orig(*a, **k)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert calls == dict(rpn=1, roi=1)  # view 2 never reaches RPN/RoI heads
    cds_keys = sorted(k for k in losses if k.startswith('loss_cds'))
    assert cds_keys == ['loss_cds_inst_s0'
                        ] + [f'loss_cds_s{i}' for i in range(4)]
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox'} <= set(losses)
    total = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
    for head in (model.cds_head, model.instance_head):
        for name, p in head.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.detector.backbone.conv1.weight.grad.abs().sum() > 0
    assert not any(m._forward_hooks for m in model.detector.neck.modules())


def norm_buffers(module):
    return {
        k: v
        for k, v in module.state_dict().items()
        if k.rsplit('.', 1)[-1] in ('running_mean', 'running_var',
                                    'num_batches_tracked')
    }


@pytest.mark.parametrize('view2_norm_stats', [False, True])
def test_view2_updates_norm_running_stats_only_when_asked(
        demo_cfg, view2_norm_stats):
    model = build(demo_cfg, view2_norm_stats=view2_norm_stats).train()
    plain = copy.deepcopy(model.detector)
    data = two_view_batch(model)
    view1_samples = copy.deepcopy(data['data_samples']['main'])
    model.loss(data['inputs'], data['data_samples'])
    plain.loss(data['inputs']['main'], view1_samples)
    got, view1_only = norm_buffers(model.detector), norm_buffers(plain)
    assert len(got) == 3 * 20  # every BatchNorm of the ResNet-18
    same = all(torch.equal(got[k], view1_only[k]) for k in got)
    assert same != view2_norm_stats


def test_no_box_batch_gives_zero_instance_loss_and_finite_grads(demo_cfg):
    model = build(demo_cfg).train()
    data = two_view_batch(model, num_items=(0, 0))
    losses = model.loss(data['inputs'], data['data_samples'])
    assert losses['loss_cds_inst_s0'].item() == 0
    losses['loss_cds_inst_s0'].backward()
    for p in model.instance_head.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_predict_is_the_plain_detector(demo_cfg):
    model = build(demo_cfg).eval()
    plain = MODELS.build(copy.deepcopy(demo_cfg['detector'])).eval()
    plain.load_state_dict(model.detector.state_dict(), strict=True)
    packed = demo_mm_inputs(
        batch_size=2, image_shapes=(3, 96, 96), num_classes=3)
    data = model.data_preprocessor(packed, False)
    got = model.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    ref = plain.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.pred_instances.bboxes,
                                   b.pred_instances.bboxes)
        torch.testing.assert_close(a.pred_instances.scores,
                                   b.pred_instances.scores)


def test_off_mode_is_the_plain_detector_with_no_heads(demo_cfg):
    model = build(demo_cfg, mode='off').train()
    assert model.cds_head is None and model.instance_head is None
    data = two_view_batch(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert not any(k.startswith('loss_cds') for k in losses)
    assert all(k.startswith('detector.') for k in model.state_dict())


def test_backbone_only_taps_skip_the_neck_for_view2(demo_cfg):
    model = build(
        demo_cfg,
        instance_head=None,
        cds_head=dict(
            type='CDSHead',
            taps=['backbone.layer2', 'backbone.layer4'],
            projector=dict(type='SepConvProjector'),
            use_labels=False)).train()
    assert model.cds_head.in_channels == [32, 128]
    neck_calls = []
    model.detector.neck.register_forward_hook(lambda *a: neck_calls.append(1))
    data = two_view_batch(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert len(neck_calls) == 1
    assert torch.isfinite(losses['loss_cds_s1'])


def test_errors_name_what_is_missing(demo_cfg):
    with pytest.raises(ValueError, match='model.mode'):
        build(demo_cfg, mode='dsn')
    with pytest.raises(ValueError, match='cds_head, instance_head or both'):
        build(demo_cfg, cds_head=None, instance_head=None)
    with pytest.raises(ValueError, match=r"cds_head.taps: 'neck.fpn_conv.0'"):
        build(
            demo_cfg, cds_head=dict(type='CDSHead', taps=['neck.fpn_conv.0']))
    model = build(demo_cfg).train()
    packed = demo_mm_inputs(
        batch_size=2, image_shapes=(3, 96, 96), num_classes=3)
    data = model.data_preprocessor.data_preprocessor(packed, True)
    with pytest.raises(ValueError, match='MultiBranch'):
        model.loss(data['inputs'], data['data_samples'])


def test_frozen_stage_tap_names_frozen_stages(demo_cfg):
    cfg = copy.deepcopy(demo_cfg)
    cfg.detector.backbone.frozen_stages = 1
    with pytest.raises(ValueError, match="'backbone.layer1'.*frozen_stages"):
        build(
            cfg,
            instance_head=None,
            cds_head=dict(
                type='CDSHead',
                taps=['backbone.layer1'],
                use_labels=False,
                projector=dict(type='MLPProjector')))


def test_image_level_head_settings_that_need_labels_are_refused(demo_cfg):
    head = copy.deepcopy(demo_cfg.cds_head)
    head.pop('use_labels')
    model = build(demo_cfg, cds_head=head)
    assert model.cds_head.use_labels is False  # the detector default
    with pytest.raises(ValueError, match=r'model.cds_head.use_labels=True'):
        build(demo_cfg, cds_head=dict(head, use_labels=True))
    with pytest.raises(ValueError, match=r"model.cds_head.mode='dsn'"):
        build(demo_cfg, cds_head=dict(head, mode='dsn', num_classes=3))


def _randomised(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=g))
    return module


def _load_from(ckpt, work_dir):
    """The demo CDS config, built by the Runner, after its ``load_from``."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO)
    cfg.work_dir, cfg.load_from = str(work_dir), str(ckpt)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    return runner.model


def test_plain_and_cds_checkpoints_load_through_load_from(
        demo_cfg, tmp_path, monkeypatch):
    from cds_mm.models.utils import plain_checkpoint
    logged = []
    monkeypatch.setattr(plain_checkpoint, 'print_log',
                        lambda msg, **kw: logged.append(msg))
    torch.manual_seed(7)  # not the wrapper's init
    plain = _randomised(MODELS.build(copy.deepcopy(demo_cfg.detector)), 1)
    torch.save(
        dict(state_dict=plain.state_dict(), meta={}), tmp_path / 'plain.pth')
    model = _load_from(tmp_path / 'plain.pth', tmp_path / 'a')
    assert len(logged) == 1 and '"detector."' in logged[0]
    inner = model.detector.state_dict()
    assert inner.keys() == plain.state_dict().keys()
    for k, v in plain.state_dict().items():
        assert torch.equal(inner[k], v), k

    _randomised(model, 2)  # heads too: the CDS checkpoint keeps everything
    torch.save(
        dict(state_dict=model.state_dict(), meta={}), tmp_path / 'cds.pth')
    again = _load_from(tmp_path / 'cds.pth', tmp_path / 'b')
    assert len(logged) == 1  # nothing moved
    assert again.state_dict().keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
