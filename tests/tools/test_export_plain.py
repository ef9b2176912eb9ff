"""tools/export_plain.py: a CDS checkpoint becomes a plain model and a
backbone-only file.

The wrappers are built from the demo configs (tiny ResNet-18s), their BN
statistics set to non-default values, and saved like mmengine's CheckpointHook
does (``state_dict``, ``meta``, ``message_hub``). The export must load
``strict=True`` into the plain upstream model of the same config and predict
exactly what the wrapper predicts; the backbone file must initialise a stock
mmdet Faster R-CNN through ``init_cfg=dict(type='Pretrained',
prefix='backbone.')``.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, REPO_ROOT, build_cls,
                            build_det, det_samples, kill_running, load_tool,
                            popen_python, wait)
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import cds_mm  # noqa: F401

TOOL = osp.join(REPO_ROOT, 'tools', 'export_plain.py')

export_plain = load_tool(TOOL)


def _randomise(model, seed):
    """Non-default BN statistics and perturbed weights, so a wrong mapping
    cannot pass."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.rand(t.shape, generator=g)
            if name.endswith('running_var'):
                t.copy_(0.5 + noise)
            else:
                t.add_(0.05 * (noise - 0.5))
    return model


def _save_like_mmengine(model, path):
    hub = MessageHub.get_instance('export_plain_test')
    hub.update_scalar('train/loss', 1.25)
    torch.save(
        {
            'meta': {
                'epoch': 3,
                'iter': 42,
                'seed': np.int64(0),
                'mmengine_version': '0.10.7'
            },
            'state_dict': model.state_dict(),
            'message_hub': hub.state_dict()
        }, path)


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _export(build, config, seed, root, ckpt_name):
    """A randomised wrapper, saved as ``root/ckpt_name`` and exported to
    ``root/export``."""
    torch.manual_seed(0)
    wrapper = _randomise(
        build(copy.deepcopy(Config.fromfile(config).model)), seed).eval()
    _save_like_mmengine(wrapper, root / ckpt_name)
    paths = export_plain.export(config, str(root / ckpt_name),
                                str(root / 'export'))
    return wrapper, paths, root


@pytest.fixture(scope='module')
def cls_cfg():
    return Config.fromfile(DEMO_CLS_CFG)


@pytest.fixture(scope='module')
def det_cfg():
    return Config.fromfile(DEMO_DET_CFG)


@pytest.fixture(scope='module')
def cls_export(tmp_path_factory):
    return _export(build_cls, DEMO_CLS_CFG, 0, tmp_path_factory.mktemp('cls'),
                   'epoch_3.pth')


@pytest.fixture(scope='module')
def det_export(tmp_path_factory):
    return _export(build_det, DEMO_DET_CFG, 1, tmp_path_factory.mktemp('det'),
                   'epoch_12.pth')


def test_classifier_export_loads_strict_and_predicts_the_same(
        cls_cfg, cls_export):
    wrapper, paths, _ = cls_export
    assert sorted(paths) == ['backbone', 'heads', 'plain']
    heads = _load(paths['heads'])['state_dict']
    assert sorted(heads) == sorted(k for k in wrapper.state_dict()
                                   if k.startswith('cds_head.'))
    ckpt = _load(paths['plain'])
    assert ckpt['meta']['epoch'] == 3 and ckpt['meta'][
        'cds_mm_export'] == 'epoch_3.pth'
    plain_sd = ckpt['state_dict']
    expect = {
        k[len('classifier.'):]
        for k in wrapper.state_dict() if k.startswith('classifier.')
    }
    assert set(plain_sd) == expect
    assert not [k for k in plain_sd if 'cds_head' in k or 'projector' in k]
    # heads were there
    assert any(k.startswith('cds_head.') for k in wrapper.state_dict())

    plain = build_cls(copy.deepcopy(cls_cfg.model.classifier))
    assert type(plain).__name__ == 'ImageClassifier'
    plain.load_state_dict(plain_sd, strict=True)
    plain.eval()
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got, ref = wrapper.predict(x), plain.predict(x)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.pred_score, b.pred_score, rtol=0, atol=0)
    # and through each model's own data preprocessor, as tools/test.py runs
    # them
    imgs = torch.randint(
        0,
        256, (5, 3, 32, 32),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(3))
    samples = [DataSample().set_gt_label(i % 10) for i in range(5)]
    got = wrapper.test_step(
        dict(inputs=imgs, data_samples=copy.deepcopy(samples)))
    ref = plain.test_step(
        dict(inputs=imgs, data_samples=copy.deepcopy(samples)))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.pred_score, b.pred_score)
    assert [int(a.pred_label) for a in got] == [int(b.pred_label) for b in ref]


def test_classifier_backbone_file_is_the_backbone_subset(cls_export):
    _, paths, _ = cls_export
    plain_sd = _load(paths['plain'])['state_dict']
    backbone = _load(paths['backbone'])['state_dict']
    assert backbone and all(k.startswith('backbone.') for k in backbone)
    assert set(backbone) == {k for k in plain_sd if k.startswith('backbone.')}
    for k, v in backbone.items():
        assert torch.equal(v, plain_sd[k]), k


def test_detector_export_loads_strict_and_predicts_the_same(
        det_cfg, det_export):
    wrapper, paths, _ = det_export
    plain_sd = _load(paths['plain'])['state_dict']
    expect = {
        k[len('detector.'):]
        for k in wrapper.state_dict() if k.startswith('detector.')
    }
    assert set(plain_sd) == expect
    assert any(k.startswith('instance_head.') for k in wrapper.state_dict())
    plain = build_det(copy.deepcopy(det_cfg.model.detector))
    assert type(plain).__name__ == 'FasterRCNN'
    plain.load_state_dict(plain_sd, strict=True)
    plain.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = wrapper.predict(x, det_samples(2, 64))
        ref = plain.predict(x, det_samples(2, 64))
    for a, b in zip(got, ref):
        # random weights still give boxes to compare
        assert len(a.pred_instances) > 0
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(a.pred_instances[key],
                                       b.pred_instances[key])


def test_stock_faster_rcnn_initialises_its_backbone_from_the_export(
        det_cfg, det_export, monkeypatch):
    import mmengine.runner.checkpoint as ckpt_module
    _, paths, _ = det_export
    exported = _load(paths['backbone'])['state_dict']
    assert exported and all(k.startswith('backbone.') for k in exported)

    # PretrainedInit loads with strict=False and only logs missing keys: make
    # it strict
    original, loaded_into = ckpt_module.load_state_dict, []

    def strict_load(module, state_dict, strict=False, logger=None):
        loaded_into.append(type(module).__name__)
        return original(module, state_dict, strict=True, logger=logger)

    monkeypatch.setattr(ckpt_module, 'load_state_dict', strict_load)
    stock = copy.deepcopy(det_cfg.model.detector)
    stock.backbone.init_cfg = dict(
        type='Pretrained', prefix='backbone.', checkpoint=paths['backbone'])
    torch.manual_seed(123)  # other init than the wrapper's
    model = build_det(stock)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model.init_weights()
    assert loaded_into == ['ResNet']
    backbone = model.backbone.state_dict()
    assert set(backbone) == {k[len('backbone.'):] for k in exported}
    for k, v in backbone.items():
        assert torch.equal(v, exported['backbone.' + k]), k


def test_split_rejects_a_plain_checkpoint():
    plain = build_cls(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='ResNet_CIFAR',
                depth=18,
                stem_channels=8,
                base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=64)))
    with pytest.raises(
            ValueError,
            match=r"no CDS-wrapped model: expected keys under exactly "
            r"one of \('classifier.', 'detector.'\), found none"):
        export_plain.split_state_dict(plain.state_dict())
    bad = {'classifier.backbone.w': torch.zeros(1), 'ema.w': torch.zeros(1)}
    with pytest.raises(
            ValueError,
            match=r"unexpected keys outside 'classifier.'.*'ema.w'"):
        export_plain.split_state_dict(bad)


def test_check_strict_uses_the_config_scope(cls_export):
    _, paths, _ = cls_export
    plain = _load(paths['plain'])['state_dict']
    for scope in ('mmpretrain', 'mmdet'):  # e.g. after building a detector
        with DefaultScope.overwrite_default_scope(scope):
            export_plain.check_strict(DEMO_CLS_CFG, plain)


def test_a_failing_check_writes_nothing(cls_export, tmp_path):
    """A classifier checkpoint against the detector config: no file at all."""
    _, _, root = cls_export
    with pytest.raises(
            RuntimeError, match=r'Error\(s\) in loading state_dict'):
        export_plain.export(DEMO_DET_CFG, str(root / 'epoch_3.pth'),
                            str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()
    # an earlier export in the folder is left as it was, not half replaced
    (tmp_path / 'old').mkdir()
    (tmp_path / 'old' / 'plain.pth').write_bytes(b'earlier export')
    with pytest.raises(RuntimeError):
        export_plain.export(DEMO_DET_CFG, str(root / 'epoch_3.pth'),
                            str(tmp_path / 'old'))
    assert sorted(p.name
                  for p in (tmp_path / 'old').iterdir()) == ['plain.pth']
    assert (tmp_path / 'old' / 'plain.pth').read_bytes() == b'earlier export'


def test_a_failing_write_leaves_no_partial_file(cls_export, tmp_path,
                                                monkeypatch):
    _, _, root = cls_export

    def broken_save(obj, f):
        f.write(b'half a checkpoint')
        raise OSError('disk full')

    monkeypatch.setattr(export_plain.torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        export_plain.export(DEMO_CLS_CFG, str(root / 'epoch_3.pth'),
                            str(tmp_path / 'out'))
    assert list((tmp_path / 'out').iterdir()) == []


def _cli(*args, cwd):
    return popen_python(TOOL, *args, cwd=cwd)


@pytest.fixture(scope='module', autouse=True)
def cli_runs(cls_export):
    """Both CLI runs start with the module's first test and overlap with the
    in-process ones:
    the wrapper's checkpoint, and a plain classifier's checkpoint (not a CDS
    wrapper)."""
    _, _, root = cls_export
    plain = build_cls(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='ResNet_CIFAR',
                depth=18,
                stem_channels=8,
                base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=64)))
    torch.save({
        'state_dict': plain.state_dict(),
        'meta': {}
    }, root / 'plain_cls.pth')
    procs = dict(
        good=_cli(
            DEMO_CLS_CFG,
            root / 'epoch_3.pth',
            '--out-dir',
            root / 'cli',
            cwd=root),
        bad=_cli(
            DEMO_CLS_CFG,
            root / 'plain_cls.pth',
            '--out-dir',
            root / 'cli_bad',
            cwd=root))
    yield procs
    kill_running(procs.values())


def test_cli_end_to_end(cls_export, cli_runs):
    wrapper, _, root = cls_export
    rc, out, err = wait(cli_runs['good'], timeout=240)
    assert rc == 0, (out + err)[-3000:]
    assert 'plain model (strict load checked)' in out
    plain_sd = _load(root / 'cli' / 'plain.pth')['state_dict']
    assert set(plain_sd) == set(wrapper.classifier.state_dict())
    for k, v in wrapper.classifier.state_dict().items():
        assert torch.equal(plain_sd[k], v), k
    backbone = _load(root / 'cli' / 'backbone.pth')['state_dict']
    assert backbone and all(k.startswith('backbone.') for k in backbone)


def test_cli_rejects_a_checkpoint_that_is_not_a_cds_wrapper(
        cls_export, cli_runs):
    _, _, root = cls_export
    rc, out, err = wait(cli_runs['bad'], timeout=240)
    assert rc != 0
    assert ('ValueError: checkpoint holds no CDS-wrapped model: expected keys '
            "under exactly one of ('classifier.', 'detector.'), found none"
            in err), err[-3000:]
    assert not (root / 'cli_bad').exists()  # nothing written
