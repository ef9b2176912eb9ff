"""``tools/dist_train.sh`` (torchrun + ``tools/train.py --launcher pytorch``)
with 2 CPU processes.

Runs on gloo through ``cds_mm.compat.run_distributed_on_cpu`` (mmengine alone
calls ``torch.cuda.set_device`` and hands DDP ``device_ids``). Every run keeps
``MMDistributedDataParallel(find_unused_parameters=False)``: a parameter
without gradient on any rank would stop the second iteration. Checked:

- the CDS classifier with ``gather_distributed=True`` where rank 1 only ever
  holds distinct labels (each of its anchors has its other view as the only
  positive) and rank 0 one label, with ``min_samples`` above the per-rank
  batch: only the gathered batch reaches it;
- the CDS detector demo (image-level and instance-level CDS), both heads
  gathering, where rank 1 reads only images without boxes: it must join every
  gather of rank 0 (a rank that skipped one left the other waiting until
  killed);
- SyncBN: 2 CPU processes stop at once with torch's own message; 1 process (no
  launcher) trains, because mmengine reverts the backbone's SyncBN and the
  projectors build BN.
"""
import glob
import json
import math
import os
import os.path as osp
import signal
import socket
import subprocess
import sys

import pytest
import torch
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, REPO_ROOT, TRAIN,
                            cls_data_cfg, cpu_env, det_data_cfg, scalars,
                            tiny_cfg, write_demo_data)
from mmengine.config import Config

import cds_mm  # noqa: F401  (lets torch.load read Runner checkpoints safely)

pytestmark = pytest.mark.dist

DIST_TRAIN = osp.join(REPO_ROOT, 'tools', 'dist_train.sh')
BATCH, ITERS, WORLD = 4, 3, 2
N_IMAGES = BATCH * ITERS * WORLD  # one epoch, no sampler padding
# the default wrapper, spelled out
DDP = [
    'model_wrapper_cfg.type=MMDistributedDataParallel',
    'model_wrapper_cfg.find_unused_parameters=False'
]
SYNCBN = [
    'model.classifier.backbone.norm_cfg.type=SyncBN',
    'model.cds_head.projector.norm_cfg.type=SyncBN'
]
# val_size=0: dataset index == file index; shuffle=False: rank r gets indices
# r, r + 2, ...
CLS_TRAIN_DATA = ("sampler=dict(type='DefaultSampler', shuffle=False), "
                  'dataset=ds')
# a CDS loss only for batches of >= 6: the gathered 2 x 4, never one rank's 4
MIN_GATHERED = 'model.cds_head.loss.min_samples=6'
GATHER_DET = [
    'model.cds_head.loss.gather_distributed=True',
    'model.instance_head.loss.gather_distributed=True',
    'train_dataloader.sampler.shuffle=False'
]
TIMEOUT_S = 400


def label_of(index):
    """Even indices (rank 0) all class 0; odd ones (rank 1) 1..9 in turn, so
    any BATCH <= 9
    consecutive odd indices hold distinct labels, none shared with rank 0."""
    return 0 if index % 2 == 0 else 1 + (index // 2) % 9


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(cfg, work_dir, *options, nproc=WORLD):
    """Start ``tools/dist_train.sh`` (or plain ``tools/train.py`` for 1
    process)."""
    # CPU + gloo also on a GPU machine
    env = cpu_env(PYTHON=sys.executable, PORT=str(free_port()))
    head = ['bash', DIST_TRAIN, str(cfg),
            str(nproc)] if nproc > 1 else [
                sys.executable, TRAIN,
                str(cfg), '--launcher', 'none'
            ]
    args = head + [
        '--work-dir',
        str(work_dir), '--no-validate', '--cfg-options', *options
    ]
    return subprocess.Popen(
        args,
        cwd=str(work_dir.parent),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


def descendants(pid):
    """Every process below ``pid``, from /proc (torchrun starts its workers in
    new sessions)."""
    children = {}
    for stat in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(stat) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.split('/')[2]))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def result(proc, work_dir):
    """The run's log and return code; a run still going after TIMEOUT_S (a rank
    waiting in a
    collective that another skipped) is killed with its workers and reported
    with rc None."""
    try:
        log = proc.communicate(timeout=TIMEOUT_S)[0]
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        for pid in descendants(proc.pid) + [proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log = proc.communicate(
        )[0] + f'\n[killed: still running after {TIMEOUT_S} s]'
        rc = None
    return dict(log=log, rc=rc, work_dir=work_dir)


def empty_odd_images(shapes_root):
    """Drop the boxes of every odd-indexed training image: with shuffle=False,
    rank 1's."""
    path = osp.join(shapes_root, 'annotations', 'instances_train.json')
    with open(path) as f:
        coco = json.load(f)
    odd = {img['id'] for i, img in enumerate(coco['images']) if i % 2 == 1}
    coco['annotations'] = [
        a for a in coco['annotations'] if a['image_id'] not in odd
    ]
    with open(path, 'w') as f:
        json.dump(coco, f)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """The five runs, two or three at a time (2 cores): {name: dict(log, rc,
    work_dir)}."""
    root = tmp_path_factory.mktemp('dist')
    write_demo_data(root, labels=[label_of(i) for i in range(N_IMAGES)])
    empty_odd_images(str(root / 'shapes'))
    cls, det = root / 'cls.py', root / 'det.py'
    cls.write_text(
        tiny_cfg(DEMO_CLS_CFG, iters=ITERS) + cls_data_cfg(
            str(root / 'fmnist'),
            batch=BATCH,
            val_size=0,
            train_data=CLS_TRAIN_DATA))
    det.write_text(
        tiny_cfg(DEMO_DET_CFG, iters=ITERS) +
        det_data_cfg(str(root / 'shapes') + '/', batch=2))
    out = {}
    first = dict(
        cls=(cls, [
            'model.cds_head.loss.gather_distributed=True', MIN_GATHERED, *DDP
        ]),
        det=(det, [*GATHER_DET, *DDP]))
    second = dict(
        syncbn_2proc=(cls, [*SYNCBN, *DDP]),
        syncbn_1proc=(cls, SYNCBN),
        bn_1proc=(cls, [o.replace('=SyncBN', '=BN') for o in SYNCBN]))
    for batch in (first, second):
        procs = {
            name: (launch(
                cfg, root / name, *opts,
                nproc=1 if '1proc' in name else WORLD), root / name)
            for name, (cfg, opts) in batch.items()
        }
        out.update({name: result(*p) for name, p in procs.items()})
    return out


def check_trained(run, cds_keys):
    assert run['rc'] == 0, run['log'][-4000:]
    steps = scalars(str(run['work_dir']))
    assert sorted(steps) == list(range(1, ITERS + 1))
    for entry in steps.values():
        assert set(cds_keys) <= set(entry), entry
        assert all(math.isfinite(v) for v in entry.values()), entry
    ckpt = torch.load(
        run['work_dir'] / f'iter_{ITERS}.pth', map_location='cpu')
    for key, value in ckpt['state_dict'].items():
        assert torch.isfinite(value.float()).all(), key
    return steps, ckpt


def test_classifier_gathers_across_ranks(runs):
    run = runs['cls']
    steps, _ = check_trained(run, [f'loss_cds_s{i}' for i in range(4)])
    assert 'Distributed training: True' in run['log']
    assert "using 'gloo' on this CPU-only machine" in run['log']
    dumped = Config.fromfile(glob.glob(str(run['work_dir'] / '*.py'))[0])
    assert dumped.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', find_unused_parameters=False)
    # min_samples=6 > the 4 rows of a rank: only the gathered 8 rows give a
    # loss; one rank alone would log exact zeros and the small-batch warning
    assert dumped.model.cds_head.loss.min_samples == 6
    assert 'SupConLoss needs at least' not in run['log']
    assert all(steps[s][f'loss_cds_s{i}'] > 0 for s in steps for i in range(4))


def test_detector_rank_without_boxes_joins_every_gather(runs):
    run = runs['det']  # rank 1 reads only images without boxes
    assert run['rc'] is not None, 'the run hung: ' + run['log'][-4000:]
    steps, _ = check_trained(run, [f'loss_cds_s{i}'
                                   for i in range(4)] + ['loss_cds_inst_s0'])
    assert 'Distributed training: True' in run['log']
    dumped = Config.fromfile(glob.glob(str(run['work_dir'] / '*.py'))[0])
    assert dumped.model.cds_head.loss.gather_distributed is True
    assert dumped.model.instance_head.loss.gather_distributed is True
    assert dumped.train_dataloader.sampler.shuffle is False
    # rank 0 (which logs) has boxes in every batch; the CDS weight warm-up
    # starts at 0
    assert all(steps[s]['loss_rpn_cls'] > 0 for s in steps)
    assert steps[1]['loss_cds_inst_s0'] == 0 and steps[1][
        'cds_weight_scale'] == 0
    assert all(steps[s]['loss_cds_inst_s0'] > 0 for s in steps if s > 1)


def test_syncbn_on_two_cpu_processes_stops_with_torch_message(runs):
    run = runs['syncbn_2proc']
    # failed, and did not hang
    assert run['rc'] not in (0, None), run['log'][-4000:]
    assert 'SyncBatchNorm layers only work with GPU modules' in run[
        'log'], run['log'][-4000:]
    assert not glob.glob(str(run['work_dir'] / '*.pth'))


def test_syncbn_on_one_process_trains_as_bn(runs):
    run = runs['syncbn_1proc']
    _, ckpt = check_trained(run, [f'loss_cds_s{i}' for i in range(4)])
    assert 'Distributed training: False' in run['log']
    assert "Projector norm_cfg type 'SyncBN' needs an initialised" in run[
        'log']
    # mmengine, for the backbone
    assert 'reverted to BatchNormXd' in run['log']
    # the same parameters and buffers, value for value, as the BN model
    # trained by one process on the same data and seed
    _, bn = check_trained(runs['bn_1proc'],
                          [f'loss_cds_s{i}' for i in range(4)])
    assert ckpt['state_dict'].keys() == bn['state_dict'].keys()
    assert any('running_var' in k for k in bn['state_dict'])
    for key, value in bn['state_dict'].items():
        torch.testing.assert_close(
            ckpt['state_dict'][key], value, rtol=0, atol=0, msg=key)
