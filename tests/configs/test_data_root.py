"""One data_root reaches every dataloader of every shipped config.

Two routes, each over all of ``configs/`` (``_base_`` excluded):
``--cfg-options data_root=X`` as our tools apply it
(:func:`merge_cfg_options`), and ``CDS_DATA_ROOT=X`` in the environment,
which the configs read themselves (so upstream tools get it too). Then a
missing data set stops :func:`check_data` with one line that names X.
"""
import copy
import functools
import os
import os.path as osp

import pytest
from mmengine.config import Config

from cds_mm.datasets.data_checks import MissingDataError, check_data
from cds_mm.datasets.data_root import (ENV_VAR, LOADERS, iter_datasets,
                                       merge_cfg_options)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO_ROOT, 'configs')


def shipped_configs():
    found = []
    for root, dirs, files in os.walk(CONFIG_ROOT):
        dirs[:] = sorted(d for d in dirs if d != '_base_')
        found += [
            osp.relpath(osp.join(root, f), CONFIG_ROOT) for f in sorted(files)
            if f.endswith('.py')
        ]
    return found


CONFIGS = shipped_configs()


def parse(config):
    return Config.fromfile(
        osp.join(CONFIG_ROOT, config), import_custom_modules=False)


@functools.lru_cache(maxsize=None)
def _parsed(config):
    assert ENV_VAR not in os.environ, f'{ENV_VAR} is set for the tests'
    return parse(config)


def load(config):
    """The config as parsed without the variable (a private copy)."""
    return copy.deepcopy(_parsed(config))


def leaf_datasets(key, node):
    """Dataset dicts holding no other dataset, found by walking every value
    (not through iter_datasets, the function under test)."""
    if isinstance(node, (list, tuple)):
        return [
            leaf for i, v in enumerate(node)
            for leaf in leaf_datasets(f'{key}.{i}', v)
        ]
    if not isinstance(node, dict) or 'type' not in node:
        return []
    inner = [
        leaf for k, v in node.items() if k != 'pipeline'
        for leaf in leaf_datasets(f'{key}.{k}', v)
    ]
    return inner or [(key, node)]


def data_paths(cfg):
    """``(key, path)`` for every path a dataset or evaluator reads."""
    out = []
    for name in LOADERS:
        if not cfg.get(name):
            continue
        leaves = leaf_datasets(f'{name}.dataset', cfg[name]['dataset'])
        assert leaves, name
        for key, node in leaves:
            root = node.get('data_root')
            out.append((f'{key}.data_root', root))
            if not isinstance(root, str):
                continue
            if node.get('ann_file'):
                out.append(
                    (f'{key}.ann_file', osp.join(root, node['ann_file'])))
            prefix = node.get('data_prefix')
            items = (
                prefix.items() if isinstance(prefix, dict) else [('', prefix)])
            out += [(f'{key}.data_prefix.{k}', osp.join(root, v))
                    for k, v in items if isinstance(v, str) and v]
    for name in ('val_evaluator', 'test_evaluator'):
        metrics = cfg.get(name) or []
        for i, m in enumerate(
                metrics if isinstance(metrics, list) else [metrics]):
            if m.get('ann_file'):
                out.append((f'{name}.{i}.ann_file', m['ann_file']))
    return out


def assert_all_under(cfg, root):
    paths = data_paths(cfg)
    assert paths
    for key, path in paths:
        assert isinstance(path, str), f'{key} is {path!r}, not a path'
        path = osp.normpath(path)
        assert path == root or path.startswith(root + os.sep), (key, path)


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / 'elsewhere')


def test_the_walk_sees_every_family():
    families = {c.split(os.sep)[0] for c in CONFIGS}
    assert families >= {
        'cds_classification', 'cds_detection', 'cds_semi', 'cds_distill',
        'cds_finegrained', 'demo'
    }


@pytest.mark.parametrize('config', CONFIGS)
def test_cfg_option_reaches_every_dataloader(config, data_dir):
    cfg = load(config)
    merge_cfg_options(cfg, {'data_root': data_dir})
    assert_all_under(cfg, data_dir)


@pytest.mark.parametrize('config', CONFIGS)
def test_environment_variable_reaches_every_dataloader(config, data_dir,
                                                       monkeypatch):
    monkeypatch.setenv(ENV_VAR, data_dir)
    assert_all_under(parse(config), data_dir)


@pytest.mark.parametrize('config', CONFIGS)
def test_missing_data_is_one_line_naming_the_path(config, data_dir):
    cfg = load(config)
    merge_cfg_options(cfg, {'data_root': data_dir})
    with pytest.raises(MissingDataError) as err:
        check_data(cfg)
    msg = str(err.value)
    assert '\n' not in msg and data_dir in msg
    assert msg.startswith(
        ('train_dataloader.', 'val_dataloader.', 'test_dataloader.'))


@pytest.mark.parametrize('config', [c for c in CONFIGS if 'cifar' in c])
def test_cifar_configs_never_download(config, data_dir, monkeypatch):
    import mmpretrain.datasets.cifar as cifar
    from mmpretrain.registry import DATASETS
    cfg = load(config)
    cifars = [(k, d) for k, d in iter_datasets(cfg)
              if d['type'].rsplit('.', 1)[-1] in ('CIFAR10', 'CIFAR100')]
    assert len(cifars) == 3, [k for k, _ in cifars]
    assert all(d.get('download') is False for _, d in cifars), cifars

    def no_download(*args, **kwargs):
        raise AssertionError(f'download attempted: {args}')

    monkeypatch.setattr(cifar, 'download_and_extract_archive', no_download)
    os.makedirs(data_dir)
    dataset = dict(cifars[0][1], data_root=data_dir, pipeline=[])
    with pytest.raises(RuntimeError, match='Cannot find'):
        DATASETS.build(dataset)
