"""Seeded runs repeat exactly: two ``tools/train.py`` runs of the tiny CDS classifier and of the
tiny CDS detector (3 iterations each, ``randomness=dict(seed=0, deterministic=True)``) log identical
losses and save identical weights.

Both runs of a pair use the same thread count (``OMP_NUM_THREADS=1``): CPU kernels reduce in a
thread-dependent order, so runs with different thread counts differ in the last bits.
"""
import glob
import json
import math
import os
import os.path as osp
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from cds_mm.datasets import make_shapes_coco  # importing cds_mm lets torch.load read ckpts

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO_ROOT, 'tools', 'train.py')
CLS_CFG = osp.join(REPO_ROOT, 'configs', 'demo', 'resnet18-w16_cds_1xb128_fashionmnist.py')
DET_CFG = osp.join(REPO_ROOT, 'configs', 'demo', 'faster-rcnn_r18-w16_fpn_cds_shapes.py')
# CPU only (also on a GPU machine), one thread per process
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
NOT_COMPARED = ('time', 'data_time')  # wall-clock entries of scalars.json

# IterBasedTrainLoop, a checkpoint at the end, per-iteration raw values in scalars.json
TINY = """
_base_ = {base!r}
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=3, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(
    _delete_=True, type='CheckpointHook', by_epoch=False, interval=3))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0, deterministic=True)
"""
CLS_DATA = """
ds = dict(data_root={root!r}, val_size=8)
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(max_samples=32, **ds))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=ds)
test_dataloader = dict(num_workers=0, dataset=ds)
param_scheduler = dict(_delete_=True, type='ConstantLR', factor=1.0, by_epoch=False)
"""
DET_DATA = """
data_root = {root!r}
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
"""


def write_fashion_idx(root, n=48):
    """Uncompressed Fashion-MNIST-style IDX files: noise plus a label-sized bright bar."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 10).astype(np.uint8)
    imgs = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for img, label in zip(imgs, labels):
        img[4:10 + 2 * label, 6:20] += 120
    for split in ('train', 't10k'):
        for kind, arr in (('images-idx3', imgs), ('labels-idx1', labels)):
            raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape)
            with open(osp.join(root, f'{split}-{kind}-ubyte'), 'wb') as f:
                f.write(raw + arr.tobytes())


def scalars(work_dir):
    """Per-step training scalars of every run in ``work_dir`` (later runs win)."""
    out = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if 'loss' in entry:
                    out[entry['step']] = {k: v for k, v in entry.items() if k not in NOT_COMPARED}
    return out


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp('determinism')
    write_fashion_idx(str(root / 'fmnist'))
    make_shapes_coco(str(root / 'shapes'), num_train=16, num_val=8, img_size=64)
    cls_cfg, det_cfg = root / 'tiny_cls.py', root / 'tiny_det.py'
    cls_cfg.write_text(TINY.format(base=CLS_CFG) + CLS_DATA.format(root=str(root / 'fmnist')))
    det_cfg.write_text(TINY.format(base=DET_CFG) + DET_DATA.format(root=str(root / 'shapes') + '/'))
    return dict(cls=cls_cfg, det=det_cfg)


@pytest.mark.parametrize('kind', ['cls', 'det'])
def test_two_seeded_runs_are_identical(configs, tmp_path, kind):
    # both runs at once: they also must not disturb each other
    procs = [subprocess.Popen([sys.executable, TRAIN, str(configs[kind]), '--work-dir',
                               str(tmp_path / f'run{i}'), '--no-validate'],
                              cwd=str(tmp_path), env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    for proc in procs:
        out = proc.communicate(timeout=400)[0]
        assert proc.returncode == 0, out[-4000:]
    runs = [scalars(str(tmp_path / f'run{i}')) for i in range(2)]
    assert sorted(runs[0]) == [1, 2, 3]
    cds_keys = [k for k in runs[0][1] if k.startswith('loss_cds_')]
    assert len(cds_keys) == (4 if kind == 'cls' else 5), runs[0][1]
    assert all(math.isfinite(v) for entry in runs[0].values() for v in entry.values())
    assert runs[0] == runs[1]                                  # every loss, lr and acc, exactly
    a, b = (torch.load(tmp_path / f'run{i}' / 'iter_3.pth', map_location='cpu') for i in range(2))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=0, atol=0, msg=key)
