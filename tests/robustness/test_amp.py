"""``tools/train.py --amp`` on CPU: the CDS classifier and detector train under bf16 autocast.

On a CPU-only machine ``--amp`` gives an ``AmpOptimWrapper`` with ``dtype='bfloat16'``, which
``cds_mm.compat.enable_cpu_amp_optim_wrapper`` lets build; the detector's mmcv ``nms`` /
``RoIAlign`` run through ``cds_mm.compat.run_mmcv_cpu_ops_in_fp32``. Each run takes 3 iterations
and must log finite values for every loss, the ``loss_cds_*`` terms included, and save finite
fp32 weights. In process, the classifier's ``loss()`` under bf16 autocast gets bf16 projections
and returns fp32 ``loss_cds_*`` (SupConLoss computes in fp32).
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
from mmengine.config import Config

from cds_mm.datasets import make_shapes_coco  # importing cds_mm lets torch.load read ckpts

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO_ROOT, 'tools', 'train.py')
CLS_CFG = osp.join(REPO_ROOT, 'configs', 'demo', 'resnet18-w16_cds_1xb128_fashionmnist.py')
DET_CFG = osp.join(REPO_ROOT, 'configs', 'demo', 'faster-rcnn_r18-w16_fpn_cds_shapes.py')
# CPU only (also on a GPU machine), one thread per process
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
CDS_KEYS = dict(cls=[f'loss_cds_s{i}' for i in range(4)],
                det=[f'loss_cds_s{i}' for i in range(4)] + ['loss_cds_inst_s0'])

TINY = """
_base_ = {base!r}
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=3, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(
    _delete_=True, type='CheckpointHook', by_epoch=False, interval=3))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0)
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
    """Per-step training scalars of the run in ``work_dir``."""
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        entries = [json.loads(line) for line in f]
    return {e['step']: e for e in entries if 'loss' in e}


@pytest.fixture(scope='module')
def amp_runs(tmp_path_factory):
    """Both ``--amp`` runs, side by side: {kind: (work_dir, log)}."""
    root = tmp_path_factory.mktemp('amp')
    write_fashion_idx(str(root / 'fmnist'))
    make_shapes_coco(str(root / 'shapes'), num_train=16, num_val=8, img_size=64)
    (root / 'cls.py').write_text(TINY.format(base=CLS_CFG) +
                                 CLS_DATA.format(root=str(root / 'fmnist')))
    (root / 'det.py').write_text(TINY.format(base=DET_CFG) +
                                 DET_DATA.format(root=str(root / 'shapes') + '/'))
    procs = {kind: subprocess.Popen(
        [sys.executable, TRAIN, str(root / f'{kind}.py'), '--work-dir', str(root / kind), '--amp',
         '--no-validate'], cwd=str(root), env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for kind in ('cls', 'det')}
    return {kind: (root / kind, proc.communicate(timeout=400)[0], proc.returncode)
            for kind, proc in procs.items()}


@pytest.mark.parametrize('kind', ['cls', 'det'])
def test_amp_run_has_finite_losses(amp_runs, kind):
    work_dir, log, returncode = amp_runs[kind]
    assert returncode == 0, log[-4000:]
    dumped = Config.fromfile(glob.glob(str(work_dir / '*.py'))[0])
    assert dumped.optim_wrapper.type == 'AmpOptimWrapper'
    assert dumped.optim_wrapper.get('dtype') == 'bfloat16'   # CPU autocast
    steps = scalars(str(work_dir))
    assert sorted(steps) == [1, 2, 3]
    for step, entry in steps.items():
        assert all(math.isfinite(v) for v in entry.values()), (step, entry)
        assert set(CDS_KEYS[kind]) <= set(entry), entry
        assert entry['loss'] > 0
    # every CDS term is a real loss on some iteration, not the all-zero fallback
    assert all(any(steps[s][k] > 0 for s in steps) for k in CDS_KEYS[kind]), steps
    ckpt = torch.load(work_dir / 'iter_3.pth', map_location='cpu')
    for key, value in ckpt['state_dict'].items():
        assert value.dtype != torch.bfloat16, key        # weights stay fp32 under autocast
        assert torch.isfinite(value.float()).all(), key


def test_cds_losses_are_fp32_under_bf16_autocast(amp_runs):
    """The path ``--amp`` takes, in process: bf16 projections in, fp32 ``loss_cds_*`` out."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    work_dir = amp_runs['cls'][0]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(str(work_dir.parent / 'cls.py')).model)
    seen = []
    for proj in model.cds_head.projectors:
        proj.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(4, 3, 32, 32, generator=g) for _ in range(2)]
    samples = [DataSample().set_gt_label(i % 2) for i in range(4)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(views, samples)
    assert seen and set(seen) == {torch.bfloat16}         # autocast reached the projectors
    cds = {k: v for k, v in losses.items() if k.startswith('loss_cds_')}
    assert sorted(cds) == CDS_KEYS['cls']
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in cds.values()), cds
