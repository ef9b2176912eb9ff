"""Seeded runs repeat exactly: two ``tools/train.py`` runs of the tiny CDS
classifier and of the tiny CDS detector (3 iterations each,
``randomness=dict(seed=0, deterministic=True)``) log identical losses and save
identical weights.

Both runs of a pair use the same thread count (``OMP_NUM_THREADS=1``): CPU
kernels reduce in a thread-dependent order, so runs with different thread
counts differ in the last bits.
"""
import math

import pytest
import torch
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, cls_data_cfg,
                            det_data_cfg, finish, popen_train,
                            scalars_all_runs, tiny_cfg, write_demo_data)

import cds_mm  # noqa: F401  (registries; conftest applies cds_mm.compat)

RANDOMNESS = 'dict(seed=0, deterministic=True)'


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp('determinism')
    write_demo_data(root)
    cls_cfg, det_cfg = root / 'tiny_cls.py', root / 'tiny_det.py'
    cls_cfg.write_text(
        tiny_cfg(DEMO_CLS_CFG, randomness=RANDOMNESS) +
        cls_data_cfg(str(root / 'fmnist')))
    det_cfg.write_text(
        tiny_cfg(DEMO_DET_CFG, randomness=RANDOMNESS) +
        det_data_cfg(str(root / 'shapes') + '/'))
    return dict(cls=cls_cfg, det=det_cfg)


@pytest.mark.parametrize('kind', ['cls', 'det'])
def test_two_seeded_runs_are_identical(configs, tmp_path, kind):
    # both runs at once: they also must not disturb each other
    procs = [
        popen_train(configs[kind], tmp_path / f'run{i}', '--no-validate')
        for i in range(2)
    ]
    for proc in procs:
        finish(proc)
    runs = [scalars_all_runs(str(tmp_path / f'run{i}')) for i in range(2)]
    assert sorted(runs[0]) == [1, 2, 3]
    cds_keys = [k for k in runs[0][1] if k.startswith('loss_cds_')]
    assert len(cds_keys) == (4 if kind == 'cls' else 5), runs[0][1]
    assert all(
        math.isfinite(v) for entry in runs[0].values() for v in entry.values())
    # every loss, lr and acc, exactly
    assert runs[0] == runs[1]
    a, b = (
        torch.load(tmp_path / f'run{i}' / 'iter_3.pth', map_location='cpu')
        for i in range(2))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(
            b['state_dict'][key], value, rtol=0, atol=0, msg=key)
