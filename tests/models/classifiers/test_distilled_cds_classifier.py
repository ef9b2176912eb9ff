import copy
import os.path as osp

import pytest
import torch
from cds_test_utils import REPO_ROOT, build_cls, load_tool
from mmpretrain.structures import DataSample
from test_cds_classifier import CLASSIFIER, TAPS  # noqa: E402

import cds_mm  # noqa: F401
from cds_mm.models.losses import KDLoss

EXPORT = load_tool(osp.join(REPO_ROOT, 'tools', 'export_plain.py'))


def wrapper_cfg(width, mode='cds'):
    """A CDSClassifier around ResNet-18 (CIFAR stem) of base width ``width``.
    """
    classifier = copy.deepcopy(CLASSIFIER)
    classifier['backbone'].update(stem_channels=width, base_channels=width)
    classifier['head']['in_channels'] = 8 * width
    return dict(
        type='CDSClassifier',
        mode=mode,
        classifier=classifier,
        cds_head=dict(type='CDSHead', taps=TAPS))


@pytest.fixture(scope='module')
def teacher_export(tmp_path_factory):
    """A trained-looking teacher (width 16, random BN statistics) exported as
    users do."""
    root = tmp_path_factory.mktemp('teacher')
    torch.manual_seed(1)
    teacher = build_cls(wrapper_cfg(16))
    for m in teacher.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(
        dict(state_dict=teacher.state_dict(), meta={}), root / 'epoch_1.pth')
    paths = EXPORT.export(
        wrapper_cfg(16), str(root / 'epoch_1.pth'), str(root / 'export'))
    return teacher.state_dict(), paths, str(root / 'epoch_1.pth')


def build(teacher_export,
          width=8,
          mode='cds',
          teacher_width=16,
          heads=True,
          **kwargs):
    _, paths, _ = teacher_export
    torch.manual_seed(0)
    cfg = dict(
        wrapper_cfg(width, mode),
        type='DistilledCDSClassifier',
        teacher=wrapper_cfg(teacher_width),
        teacher_ckpt=paths['plain'],
        teacher_heads_ckpt=paths['heads'] if heads else None,
        **kwargs)
    model = build_cls(cfg)
    model.init_weights()
    return model.train()


def batch(n=6):
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(n, 3, 32, 32, generator=g) for _ in range(2)]
    return views, [
        DataSample().set_gt_label(y) for y in [0, 1, 1, 2, 3, 4][:n]
    ]


def test_teacher_is_loaded_frozen_and_stays_in_eval_mode(teacher_export):
    saved = teacher_export[0]
    model = build(teacher_export)
    teacher = model.teacher
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert not any(p.requires_grad for p in teacher.parameters())
    model.train()
    assert model.training and model.classifier.training
    assert not any(m.training for m in teacher.modules())
    before = copy.deepcopy(teacher.state_dict())
    losses = model.loss(*batch())
    sum(losses.values()).backward()
    for k, v in teacher.state_dict().items():
        assert torch.equal(
            v, before[k]), f'teacher {k} changed (BatchNorm in train mode?)'
    assert all(p.grad is None for p in teacher.parameters())
    # (init_weights zeroes each block's last BN, so the stem is the first layer
    # with grads)
    assert model.classifier.backbone.conv1.weight.grad.abs().max() > 0
    assert all(a.weight.grad.abs().max() > 0 for a in model.kd_adapters)


def test_losses_and_adapters_of_distilled_cds(teacher_export):
    model = build(teacher_export)
    views, samples = batch()
    losses = model.loss(views, samples)
    assert sorted(losses) == sorted(
        ['loss_cls', 'loss_kd'] +
        [f'loss_{k}_s{i}' for k in ('cds', 'embed') for i in range(4)])
    assert [(a.in_features, a.out_features)
            for a in model.kd_adapters] == [(64, 128)] * 4
    with torch.no_grad():
        t_logits = model.teacher.classifier(views[0], mode='tensor')
        s_logits = model.classifier(views[0], mode='tensor')
    torch.testing.assert_close(losses['loss_kd'],
                               KDLoss(temperature=4.0)(s_logits, t_logits))
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_equal_widths_match_heads_without_adapter_weights(teacher_export):
    model = build(teacher_export, width=16)
    assert all(isinstance(a, torch.nn.Identity) for a in model.kd_adapters)
    assert 'loss_embed_s3' in model.loss(*batch())


def test_plain_kd_is_ce_plus_kd(teacher_export):
    model = build(teacher_export, mode='off')
    losses = model.loss(batch()[0][0], batch()[1])  # one view is enough
    assert sorted(losses) == ['loss_cls', 'loss_kd']
    assert len(model.kd_adapters) == 0


def test_missing_teacher_heads_are_an_error_only_when_matching(teacher_export):
    with pytest.raises(ValueError, match='teacher_heads_ckpt'):
        build(teacher_export, heads=False)
    model = build(teacher_export, heads=False, embed_weight=0.0)
    assert not [k for k in model.loss(*batch()) if 'embed' in k]


def test_a_training_checkpoint_holds_the_heads_too(teacher_export):
    saved, _, train_ckpt = teacher_export
    torch.manual_seed(0)
    model = build_cls(
        dict(
            wrapper_cfg(8),
            type='DistilledCDSClassifier',
            teacher=wrapper_cfg(16),
            teacher_ckpt=train_ckpt))
    model.init_weights()
    heads = {k: v for k, v in saved.items() if k.startswith('cds_head.')}
    assert heads
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_a_teacher_checkpoint_of_another_model_is_refused(teacher_export):
    with pytest.raises(ValueError, match='does not fit model.teacher'):
        build(teacher_export, teacher_width=8)
    with pytest.raises(FileNotFoundError, match='model.teacher_ckpt'):
        build_cls(
            dict(
                wrapper_cfg(8),
                type='DistilledCDSClassifier',
                teacher=wrapper_cfg(16),
                teacher_ckpt='missing.pth')).init_weights()


def test_teacher_from_a_config_file():
    cfg = osp.join(REPO_ROOT, 'configs', 'demo',
                   'resnet50-w16_cds_1xb128_fashionmnist.py')
    model = build_cls(
        dict(
            wrapper_cfg(8),
            type='DistilledCDSClassifier',
            teacher=cfg,
            teacher_ckpt='unused-until-init_weights.pth'))
    assert model.teacher.classifier.backbone.depth == 50
    assert [(a.in_features, a.out_features)
            for a in model.kd_adapters] == [(64, 512)] * 4


def test_export_of_a_student_drops_teacher_and_adapters(
        teacher_export, tmp_path):
    model = build(teacher_export)
    torch.save(
        dict(state_dict=model.state_dict(), meta={}), tmp_path / 'student.pth')
    student_cfg = dict(
        wrapper_cfg(8),
        type='DistilledCDSClassifier',
        teacher=wrapper_cfg(16),
        teacher_ckpt=teacher_export[1]['plain'])
    paths = EXPORT.export(student_cfg, str(tmp_path / 'student.pth'),
                          str(tmp_path / 'export'))
    plain = torch.load(paths['plain'], weights_only=True)['state_dict']
    student = build_cls(copy.deepcopy(wrapper_cfg(8)['classifier']))
    student.load_state_dict(plain, strict=True)
    heads = torch.load(paths['heads'], weights_only=True)['state_dict']
    assert heads and all(k.startswith('cds_head.') for k in heads)


def test_the_student_head_runs_once_per_step(teacher_export):
    model = build(teacher_export)
    calls = []
    model.classifier.head.register_forward_hook(lambda *a: calls.append(1))
    losses = model.loss(*batch())
    assert len(calls) == 1
    assert {'loss_cls', 'loss_kd'} <= set(losses)


def test_a_plain_student_checkpoint_loads_and_leaves_the_teacher(
        teacher_export, tmp_path):
    from mmengine.runner import load_checkpoint
    model = build(teacher_export)
    teacher = copy.deepcopy(model.teacher.state_dict())
    torch.manual_seed(5)
    plain = build_cls(copy.deepcopy(wrapper_cfg(8)['classifier']))
    torch.save(
        dict(state_dict=plain.state_dict(), meta={}), tmp_path / 'p.pth')
    load_checkpoint(model, str(tmp_path / 'p.pth'), map_location='cpu')
    for k, v in plain.state_dict().items():
        assert torch.equal(model.classifier.state_dict()[k], v), k
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher[k]), k


def test_embedding_loss_is_its_formula(teacher_export):
    """loss_embed_s<i> = w_i * mean over the 2N rows (both views) of the
    squared L2 distance between the adapted student projection and the
    teacher head's projection, row by row."""
    model = build(teacher_export, embed_weight=[0.1, 0.2, 0.3, 0.4]).eval()
    views, samples = batch()
    losses = model.loss(views, samples)
    with torch.no_grad():
        z1, z2 = model.cds_head.project_views(
            model._tapped(views[0]), model._tapped(views[1]))
        t1, t2 = model.teacher.cds_head.project_views(
            model.teacher._tapped(views[0]), model.teacher._tapped(views[1]))
    for i, w in enumerate([0.1, 0.2, 0.3, 0.4]):
        student = model.kd_adapters[i](torch.cat([z1[i], z2[i]])).detach()
        teacher = torch.cat([t1[i], t2[i]])
        rows = [
            sum((float(a) - float(b))**2 for a, b in zip(s_row, t_row))
            for s_row, t_row in zip(student, teacher)
        ]
        assert len(rows) == 2 * len(samples)
        want = w * sum(rows) / len(rows)
        assert losses[f'loss_embed_s{i}'].item() == pytest.approx(
            want, rel=1e-5)


def test_joint_view2_norm_distils_from_one_student_pass(teacher_export):
    """view2_norm='joint' (the old joint_batch) works for the distilled
    student too: one 2N backbone pass, one head call on view 1's rows, and
    the same KD target as the plain path."""
    model = build(teacher_export, view2_norm='joint')
    sizes, head_rows = [], []
    model.classifier.backbone.register_forward_hook(
        lambda m, i, o: sizes.append(i[0].shape[0]))
    model.classifier.head.register_forward_hook(
        lambda m, i, o: head_rows.append(o.shape[0]))
    views, samples = batch()
    losses = model.loss(views, samples)
    assert sizes == [12] and head_rows == [6]
    assert sorted(losses) == sorted(
        ['loss_cls', 'loss_kd'] +
        [f'loss_{k}_s{i}' for k in ('cds', 'embed') for i in range(4)])
    assert all(torch.isfinite(v) for v in losses.values())


def test_cds_interval_skips_matching_but_keeps_the_adapters_in_graph(
        teacher_export):
    model = build(teacher_export, cds_interval=2)
    views, samples = batch()
    model.loss(views, samples)
    losses = model.loss(views, samples)
    assert sorted(losses) == ['loss_cds_skipped', 'loss_cls', 'loss_kd']
    sum(losses.values()).backward()
    assert all(a.weight.grad is not None for a in model.kd_adapters)
