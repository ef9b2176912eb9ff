"""``tools/dist_train.sh`` (torchrun + ``tools/train.py --launcher pytorch``) with 2 CPU processes.

Runs on gloo through ``cds_mm.compat.run_distributed_on_cpu`` (mmengine alone calls
``torch.cuda.set_device`` and hands DDP ``device_ids``). Every run keeps
``MMDistributedDataParallel(find_unused_parameters=False)``: a parameter without gradient on any
rank would stop the second iteration. Checked:

- the CDS classifier with ``gather_distributed=True`` where rank 1 only ever holds distinct
  labels (each of its anchors has its other view as the only positive) and rank 0 one label;
- the CDS detector demo (image-level and instance-level CDS);
- SyncBN: 2 CPU processes stop at once with torch's own message; 1 process (no launcher) trains,
  because mmengine reverts the backbone's SyncBN and the projectors build BN.
"""
import glob
import json
import math
import os
import os.path as osp
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from cds_mm.datasets import make_shapes_coco  # importing cds_mm lets torch.load read ckpts

pytestmark = pytest.mark.dist

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO_ROOT, 'tools', 'train.py')
DIST_TRAIN = osp.join(REPO_ROOT, 'tools', 'dist_train.sh')
CLS_CFG = osp.join(REPO_ROOT, 'configs', 'demo', 'resnet18-w16_cds_1xb128_fashionmnist.py')
DET_CFG = osp.join(REPO_ROOT, 'configs', 'demo', 'faster-rcnn_r18-w16_fpn_cds_shapes.py')
BATCH, ITERS, WORLD = 4, 3, 2
N_IMAGES = BATCH * ITERS * WORLD  # one epoch, no sampler padding
# the default wrapper, spelled out
DDP = ['model_wrapper_cfg.type=MMDistributedDataParallel',
       'model_wrapper_cfg.find_unused_parameters=False']
SYNCBN = ['model.classifier.backbone.norm_cfg.type=SyncBN',
          'model.cds_head.projector.norm_cfg.type=SyncBN']

TINY = """
_base_ = {base!r}
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters}, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(
    _delete_=True, type='CheckpointHook', by_epoch=False, interval={iters}))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0)
"""
# val_size=0: dataset index == file index; shuffle=False: rank r gets indices r, r + 2, ...
CLS_DATA = """
ds = dict(data_root={root!r}, val_size=0)
train_dataloader = dict(batch_size={batch}, num_workers=0, persistent_workers=False,
                        sampler=dict(type='DefaultSampler', shuffle=False), dataset=ds)
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=ds)
test_dataloader = dict(num_workers=0, dataset=ds)
param_scheduler = dict(_delete_=True, type='ConstantLR', factor=1.0, by_epoch=False)
"""
DET_DATA = """
data_root = {root!r}
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
"""


def label_of(index):
    """Even indices (rank 0) all class 0; odd ones (rank 1) 1..9 in turn, so any BATCH <= 9
    consecutive odd indices hold distinct labels, none shared with rank 0."""
    return 0 if index % 2 == 0 else 1 + (index // 2) % 9


def write_fashion_idx(root, labels):
    """Uncompressed Fashion-MNIST-style IDX files: noise plus a label-sized bright bar."""
    os.makedirs(root, exist_ok=True)
    labels = np.asarray(labels, np.uint8)
    imgs = np.random.default_rng(0).integers(0, 60, (len(labels), 28, 28)).astype(np.uint8)
    for img, label in zip(imgs, labels):
        img[4:10 + 2 * label, 6:20] += 120
    for split in ('train', 't10k'):
        for kind, arr in (('images-idx3', imgs), ('labels-idx1', labels)):
            raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape)
            with open(osp.join(root, f'{split}-{kind}-ubyte'), 'wb') as f:
                f.write(raw + arr.tobytes())


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(cfg, work_dir, *options, nproc=WORLD):
    """Start ``tools/dist_train.sh`` (or plain ``tools/train.py`` for 1 process)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHON=sys.executable, PORT=str(free_port()))  # CPU + gloo also on a GPU machine
    head = ['bash', DIST_TRAIN, str(cfg), str(nproc)] if nproc > 1 else [
        sys.executable, TRAIN, str(cfg), '--launcher', 'none']
    args = head + ['--work-dir', str(work_dir), '--no-validate', '--cfg-options', *options]
    return subprocess.Popen(args, cwd=str(work_dir.parent), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def result(proc, work_dir):
    return dict(log=proc.communicate(timeout=400)[0], rc=proc.returncode, work_dir=work_dir)


def scalars(work_dir):
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        entries = [json.loads(line) for line in f]
    return {e['step']: e for e in entries if 'loss' in e}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """The four runs, two at a time (2 cores): {name: dict(log, rc, work_dir)}."""
    root = tmp_path_factory.mktemp('dist')
    write_fashion_idx(str(root / 'fmnist'), [label_of(i) for i in range(N_IMAGES)])
    make_shapes_coco(str(root / 'shapes'), num_train=16, num_val=8, img_size=64)
    cls, det = root / 'cls.py', root / 'det.py'
    cls.write_text(TINY.format(base=CLS_CFG, iters=ITERS) +
                   CLS_DATA.format(root=str(root / 'fmnist'), batch=BATCH))
    det.write_text(TINY.format(base=DET_CFG, iters=ITERS) +
                   DET_DATA.format(root=str(root / 'shapes') + '/'))
    out = {}
    first = dict(cls=(cls, ['model.cds_head.loss.gather_distributed=True', *DDP]),
                 det=(det, DDP))
    second = dict(syncbn_2proc=(cls, [*SYNCBN, *DDP]), syncbn_1proc=(cls, SYNCBN))
    for batch in (first, second):
        procs = {name: (launch(cfg, root / name, *opts, nproc=1 if '1proc' in name else WORLD),
                        root / name) for name, (cfg, opts) in batch.items()}
        out.update({name: result(*p) for name, p in procs.items()})
    return out


def check_trained(run, cds_keys):
    assert run['rc'] == 0, run['log'][-4000:]
    steps = scalars(str(run['work_dir']))
    assert sorted(steps) == list(range(1, ITERS + 1))
    for entry in steps.values():
        assert set(cds_keys) <= set(entry), entry
        assert all(math.isfinite(v) for v in entry.values()), entry
    ckpt = torch.load(run['work_dir'] / f'iter_{ITERS}.pth', map_location='cpu')
    for key, value in ckpt['state_dict'].items():
        assert torch.isfinite(value.float()).all(), key
    return steps, ckpt


def test_shards_put_singletons_on_rank1():
    # DefaultSampler(shuffle=False) on WORLD ranks: rank r reads indices r, r + WORLD, ...
    for it in range(ITERS):
        rank0 = [label_of(i) for i in range(0, N_IMAGES, WORLD)][it * BATCH:(it + 1) * BATCH]
        rank1 = [label_of(i) for i in range(1, N_IMAGES, WORLD)][it * BATCH:(it + 1) * BATCH]
        assert len(set(rank1)) == BATCH and set(rank0) == {0}


def test_classifier_gathers_across_ranks(runs):
    run = runs['cls']
    steps, _ = check_trained(run, [f'loss_cds_s{i}' for i in range(4)])
    assert 'Distributed training: True' in run['log']
    assert "using 'gloo' on this CPU-only machine" in run['log']
    dumped = Config.fromfile(glob.glob(str(run['work_dir'] / '*.py'))[0])
    assert dumped.model.cds_head.loss.gather_distributed is True
    assert dumped.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                            find_unused_parameters=False)
    assert all(steps[s][f'loss_cds_s{i}'] > 0 for s in steps for i in range(4))


def test_detector_demo(runs):
    run = runs['det']
    steps, _ = check_trained(run, [f'loss_cds_s{i}' for i in range(4)] + ['loss_cds_inst_s0'])
    assert 'Distributed training: True' in run['log']
    assert all(steps[s]['loss_rpn_cls'] > 0 for s in steps)


def test_syncbn_on_two_cpu_processes_stops_with_torch_message(runs):
    run = runs['syncbn_2proc']
    assert run['rc'] != 0        # and did not hang: result() waits at most 400 s
    assert 'SyncBatchNorm layers only work with GPU modules' in run['log'], run['log'][-4000:]
    assert not glob.glob(str(run['work_dir'] / '*.pth'))


def test_syncbn_on_one_process_trains_as_bn(runs):
    run = runs['syncbn_1proc']
    _, ckpt = check_trained(run, [f'loss_cds_s{i}' for i in range(4)])
    assert 'Distributed training: False' in run['log']
    assert "Projector norm_cfg type 'SyncBN' needs an initialised" in run['log']
    assert 'reverted to BatchNormXd' in run['log']  # mmengine, for the backbone
    # the same parameters and buffers as the BN model trained by the 2-process run
    bn = torch.load(runs['cls']['work_dir'] / f'iter_{ITERS}.pth', map_location='cpu')
    assert {k: v.shape for k, v in ckpt['state_dict'].items()} == {
        k: v.shape for k, v in bn['state_dict'].items()}
