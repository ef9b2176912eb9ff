"""Bad settings are refused, or warned about, when the config is built, and
the message names the config key.

Loss weights (negative or not finite, scalar or per tap, on ``CDSHead`` in
its CDS and DSN modes and on ``InstanceCDSHead``), the Fashion-MNIST
``val_size``, a top-level ``data_root`` that the datasets do not read (our
tools' check and ``DataRootCheckHook``, which the shipped configs carry for
upstream tools), and the missing-data hint of an installed package.
"""
import copy
import glob
import logging
import math
import os.path as osp
import re
from unittest import mock

import pytest
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, REPO_ROOT, build_cls,
                            build_det, write_fashion_idx)
from mmengine.config import Config

import cds_mm  # noqa: F401
from cds_mm.datasets import data_root as data_root_mod
from cds_mm.datasets.data_checks import (MissingDataError, check_data,
                                         converters_dir)
from cds_mm.datasets.data_root import (data_root_mismatches,
                                       warn_data_root_mismatch)
from cds_mm.engine.hooks import DataRootCheckHook
from cds_mm.models.heads import CDSHead, InstanceCDSHead
from cds_mm.models.utils.weight_checks import check_weight, check_weights

TAPS = ['a', 'b']
BAD = [-0.1, -1, math.nan, math.inf, -math.inf]

# ------------------------------------------------------------------ weights


@pytest.mark.parametrize('value', BAD)
def test_check_weight_refuses_negative_and_non_finite(value):
    with pytest.raises(ValueError) as err:
        check_weight(value, 'x.loss_weight')
    assert str(err.value) == ('x.loss_weight must be a finite number >= 0, '
                              f'got {value!r}')


@pytest.mark.parametrize('value', ['0.1', None, True, [0.1]])
def test_check_weight_refuses_non_numbers(value):
    with pytest.raises(ValueError, match=r'^x\.w must be a number'):
        check_weight(value, 'x.w')


def test_check_weights_accepts_zero_and_names_the_entry():
    assert check_weights(0, 'k') == [0.0]
    assert check_weights((0.1, 2), 'k') == [0.1, 2.0]
    with pytest.raises(ValueError, match=r'^k\[2\] must be a finite'):
        check_weights([0.1, 0.0, -0.5], 'k')


@pytest.mark.parametrize('mode', ['cds', 'dsn'])
@pytest.mark.parametrize('weight,key',
                         [(-0.1, 'cds_head.loss_weight'),
                          (math.nan, 'cds_head.loss_weight'),
                          ([0.1, -0.1], 'cds_head.loss_weight[1]'),
                          ([math.inf, 0.1], 'cds_head.loss_weight[0]')])
def test_cds_head_refuses_bad_weights(mode, weight, key):
    with pytest.raises(ValueError) as err:
        CDSHead(
            taps=TAPS,
            in_channels=[8, 8],
            mode=mode,
            num_classes=3,
            loss_weight=weight,
            projector=dict(type='MLPProjector', out_channels=4))
    assert str(err.value).startswith(f'{key} must be a finite number >= 0')


@pytest.mark.parametrize('weight,key',
                         [(-0.1, 'instance_head.loss_weight'),
                          ([0.1, math.nan], 'instance_head.loss_weight[1]')])
def test_instance_head_refuses_bad_weights(weight, key):
    with pytest.raises(ValueError) as err:
        InstanceCDSHead(taps=TAPS, in_channels=[8, 8], loss_weight=weight)
    assert str(err.value).startswith(f'{key} must be a finite number >= 0')


@pytest.mark.parametrize('value', [-0.5, math.nan])
def test_kd_embedding_and_unlabelled_weights_are_refused(value):
    from cds_mm.models.losses import KDLoss
    from cds_mm.models.utils.loss_weights import per_tap_weights
    with pytest.raises(ValueError, match=r'^kd_loss\.loss_weight must be'):
        KDLoss(loss_weight=value)
    with pytest.raises(
            ValueError, match=r'^model\.embed_weight\[1\] must be a finite'):
        per_tap_weights([0.1, value], 2, 'model', name='embed_weight')
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'demo',
                 'resnet18-w16_semi-cds-20p_fashionmnist.py'),
        import_custom_modules=False)
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg.model.unlabelled_weight = value
    with pytest.raises(
            ValueError, match=r'^model\.unlabelled_weight must be a finite'):
        MODELS.build(cfg.model)


def test_zero_weight_is_allowed():
    head = CDSHead(
        taps=TAPS,
        in_channels=[8, 8],
        loss_weight=[0, 0.1],
        projector=dict(type='MLPProjector', out_channels=4))
    assert head.loss_weights == [0.0, 0.1]


def test_shipped_classifier_config_refuses_a_negative_weight():
    # through the wrapper, as a config builds it
    model = copy.deepcopy(Config.fromfile(DEMO_CLS_CFG).model)
    model.cds_head.loss_weight = [0.1, 0.1, -0.1, 0.1]
    with pytest.raises(ValueError, match=re.escape('cds_head.loss_weight[2]')):
        build_cls(model)


def test_shipped_detector_config_refuses_a_negative_instance_weight():
    model = copy.deepcopy(Config.fromfile(DEMO_DET_CFG).model)
    model.probe_size = 64
    model.instance_head.loss_weight = -0.1
    with pytest.raises(
            ValueError,
            match=re.escape('instance_head.loss_weight must be a finite')):
        build_det(model)


# ------------------------------------------------------------------ val_size


def test_fashion_mnist_val_size_names_its_key(tmp_path):
    from cds_mm.datasets import FashionMNISTIDX
    write_fashion_idx(str(tmp_path), n=20)
    with pytest.raises(ValueError) as err:
        FashionMNISTIDX(data_root=str(tmp_path), split='train')
    msg = str(err.value)
    assert msg.startswith('val_size=5000 (dataset key val_size: '
                          'train_dataloader.dataset.val_size'), msg
    assert 'must be in [0, 20)' in msg, msg


# ------------------------------------------------------------------ data_root


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(data_root_mod, '_WARNED', set())


def _child(tmp_path, base, data_root):
    path = tmp_path / 'child.py'
    path.write_text(f'_base_ = [{base!r}]\ndata_root = {data_root!r}\n')
    return Config.fromfile(str(path))


def test_a_data_root_only_child_is_a_mismatch(tmp_path, fresh_warnings):
    cfg = _child(tmp_path, DEMO_CLS_CFG, 'elsewhere')
    found = data_root_mismatches(cfg)
    assert [k for k, _ in found] == [
        f'{n}.dataset.data_root'
        for n in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    assert all(v == Config.fromfile(DEMO_CLS_CFG).data_root for _, v in found)
    msg = warn_data_root_mismatch(cfg, logger=logging.getLogger('t'))
    assert msg.startswith("data_root='elsewhere' (top level) is not what the "
                          'datasets read: train_dataloader.dataset.data_root=')
    # once per process: a second call (the hook after our tools) is silent
    assert warn_data_root_mismatch(cfg, logger=logging.getLogger('t')) is None


def test_same_root_spelled_differently_is_no_mismatch(tmp_path):
    root = Config.fromfile(DEMO_DET_CFG).data_root
    cfg = _child(tmp_path, DEMO_DET_CFG, root.rstrip('/') + '/')
    assert data_root_mismatches(cfg) == []


def test_our_tools_check_warns_before_the_missing_data(tmp_path,
                                                       fresh_warnings):
    # check_data is what tools/train.py and tools/test.py run first
    cfg = _child(tmp_path, DEMO_DET_CFG, str(tmp_path / 'mine'))
    with mock.patch('mmengine.logging.print_log') as log:
        try:
            check_data(cfg, ('test_dataloader', ))
        except MissingDataError:
            pass  # the base's data need not be here
    (call, ) = log.call_args_list
    assert 'test_dataloader.dataset.data_root=' in call.args[0]
    assert 'train_dataloader' not in call.args[0]  # only the loaders checked
    assert call.kwargs['level'] == logging.WARNING


def test_hook_warns_through_the_runner_logger(tmp_path, fresh_warnings):
    cfg = _child(tmp_path, DEMO_CLS_CFG, 'elsewhere')
    runner = mock.Mock(cfg=cfg, logger=logging.getLogger('cds_test_hook'))
    with mock.patch('mmengine.logging.print_log') as log:
        DataRootCheckHook().before_run(runner)
    (call, ) = log.call_args_list
    assert call.kwargs['logger'] is runner.logger
    assert 'val_dataloader.dataset.data_root=' in call.args[0]


def _shipped_configs():
    paths = glob.glob(
        osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
    # *_cds-pretrained_*: plain upstream detectors with a CDS-pretrained
    # backbone, meant to run without cds_mm
    return sorted(p for p in paths
                  if '_base_' not in p and '_cds-pretrained_' not in p)


@pytest.mark.parametrize(
    'path', _shipped_configs(), ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_shipped_configs_carry_the_checks_and_the_compat_line(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'][:2] == ['cds_mm', 'cds_mm.compat']
    types = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert types.count('DataRootCheckHook') == 1, types
    assert data_root_mismatches(cfg) == []  # no false alarm as shipped


# ------------------------------------------------------------------ hints


def test_missing_data_hint_names_a_script_that_exists(tmp_path):
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='CocoDataset',
                    data_root=str(tmp_path / 'shapes'),
                    ann_file='annotations/instances_train.json'))))
    with pytest.raises(MissingDataError) as err:
        check_data(cfg)
    (script, ) = re.findall(r'`python (\S+make_shapes_coco\.py) DIR`',
                            str(err.value))
    assert osp.isfile(script), script
    assert osp.dirname(script) == converters_dir()


def test_converters_dir_of_an_installed_package(tmp_path, monkeypatch):
    # a wheel's layout: site-packages/cds_mm/{datasets,.mim/tools/...}
    pkg = tmp_path / 'site-packages' / 'cds_mm'
    tools = pkg / '.mim' / 'tools' / 'dataset_converters'
    tools.mkdir(parents=True)
    (pkg / 'datasets').mkdir()
    import cds_mm.datasets.data_checks as data_checks
    monkeypatch.setattr(data_checks, '__file__',
                        str(pkg / 'datasets' / 'data_checks.py'))
    assert converters_dir() == str(tools)
