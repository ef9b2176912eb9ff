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
import math
import os.path as osp
import socket
import sys

import pytest
import torch
from mmengine.config import Config

import cds_mm  # noqa: F401  (lets torch.load read Runner checkpoints safely)
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, REPO_ROOT, TRAIN, cls_data_cfg, cpu_env,
                            det_data_cfg, popen_logged, scalars, tiny_cfg, write_demo_data)

pytestmark = pytest.mark.dist

DIST_TRAIN = osp.join(REPO_ROOT, 'tools', 'dist_train.sh')
BATCH, ITERS, WORLD = 4, 3, 2
N_IMAGES = BATCH * ITERS * WORLD  # one epoch, no sampler padding
# the default wrapper, spelled out
DDP = ['model_wrapper_cfg.type=MMDistributedDataParallel',
       'model_wrapper_cfg.find_unused_parameters=False']
SYNCBN = ['model.classifier.backbone.norm_cfg.type=SyncBN',
          'model.cds_head.projector.norm_cfg.type=SyncBN']
# val_size=0: dataset index == file index; shuffle=False: rank r gets indices r, r + 2, ...
CLS_TRAIN_DATA = "sampler=dict(type='DefaultSampler', shuffle=False), dataset=ds"


def label_of(index):
    """Even indices (rank 0) all class 0; odd ones (rank 1) 1..9 in turn, so any BATCH <= 9
    consecutive odd indices hold distinct labels, none shared with rank 0."""
    return 0 if index % 2 == 0 else 1 + (index // 2) % 9


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(cfg, work_dir, *options, nproc=WORLD):
    """Start ``tools/dist_train.sh`` (or plain ``tools/train.py`` for 1 process)."""
    env = cpu_env(PYTHON=sys.executable, PORT=str(free_port()))  # CPU + gloo also on a GPU machine
    head = ['bash', DIST_TRAIN, str(cfg), str(nproc)] if nproc > 1 else [
        sys.executable, TRAIN, str(cfg), '--launcher', 'none']
    args = head + ['--work-dir', str(work_dir), '--no-validate', '--cfg-options', *options]
    return popen_logged(args, work_dir.parent, env)


def result(proc, work_dir):
    return dict(log=proc.communicate(timeout=400)[0], rc=proc.returncode, work_dir=work_dir)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """The four runs, two at a time (2 cores): {name: dict(log, rc, work_dir)}."""
    root = tmp_path_factory.mktemp('dist')
    write_demo_data(root, labels=[label_of(i) for i in range(N_IMAGES)])
    cls, det = root / 'cls.py', root / 'det.py'
    cls.write_text(tiny_cfg(DEMO_CLS_CFG, iters=ITERS) +
                   cls_data_cfg(str(root / 'fmnist'), batch=BATCH, val_size=0,
                                train_data=CLS_TRAIN_DATA))
    det.write_text(tiny_cfg(DEMO_DET_CFG, iters=ITERS) +
                   det_data_cfg(str(root / 'shapes') + '/', batch=2))
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
