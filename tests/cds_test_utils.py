"""Helpers shared by the test modules: demo data, tiny configs, tool
subprocesses, scalars.

``tests/conftest.py`` puts ``tests/`` on ``sys.path`` (and has pytest rewrite
this module's asserts), so test modules anywhere below ``tests/`` import it as
``cds_test_utils``.
"""
import glob
import importlib.util
import json
import os
import os.path as osp
import struct
import subprocess
import sys

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(REPO_ROOT, 'tools', 'train.py')
TEST = osp.join(REPO_ROOT, 'tools', 'test.py')
DEMO_CLS_CFG = osp.join(REPO_ROOT, 'configs', 'demo',
                        'resnet18-w16_cds_1xb128_fashionmnist.py')
DEMO_DET_CFG = osp.join(REPO_ROOT, 'configs', 'demo',
                        'faster-rcnn_r18-w16_fpn_cds_shapes.py')
NOT_COMPARED = ('time', 'data_time')  # wall-clock entries of scalars.json


def cpu_env(**extra):
    """The current environment, CPU only (also on a GPU machine), one thread
    per process."""
    return dict(
        os.environ,
        CUDA_VISIBLE_DEVICES='',
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        **extra)


ENV = cpu_env()

# ------------------------------------------------------------------ data


def write_fashion_idx(root, n=48, labels=None):
    """Uncompressed Fashion-MNIST-style IDX files: noise plus a label-sized
    bright bar.

    ``labels`` defaults to ``0, 1, ..., 9, 0, ...`` for ``n`` images."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    if labels is None:
        labels = np.arange(n) % 10
    labels = np.asarray(labels, np.uint8)
    imgs = rng.integers(0, 60, (len(labels), 28, 28)).astype(np.uint8)
    for img, label in zip(imgs, labels):
        img[4:10 + 2 * label, 6:20] += 120
    for split in ('train', 't10k'):
        for kind, arr in (('images-idx3', imgs), ('labels-idx1', labels)):
            raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(
                f'>{arr.ndim}I', *arr.shape)
            with open(osp.join(root, f'{split}-{kind}-ubyte'), 'wb') as f:
                f.write(raw + arr.tobytes())


def write_demo_data(root, **fashion_kwargs):
    """``root/fmnist`` (see ``write_fashion_idx``) and a small shapes COCO set
    ``root/shapes``."""
    from cds_mm.datasets import make_shapes_coco
    write_fashion_idx(str(root / 'fmnist'), **fashion_kwargs)
    make_shapes_coco(
        str(root / 'shapes'), num_train=16, num_val=8, img_size=64)


def write_class_pngs(data_root):
    """12 PNGs, 32x32: ``data_root/{cat,dog,fox}/{0..3}.png``, each class
    brighter than the last."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for c, name in enumerate(['cat', 'dog', 'fox']):
        (data_root / name).mkdir(parents=True)
        for i in range(4):
            img = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8) + 60 * c
            Image.fromarray(img.astype(np.uint8)).save(data_root / name /
                                                       f'{i}.png')


# ------------------------------------------------------------------ tiny demo
# configs

# IterBasedTrainLoop, a checkpoint at the end, per-iteration raw values in
# scalars.json
TINY = """
_base_ = {base!r}
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters}, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(
    _delete_=True, type='CheckpointHook', by_epoch=False, interval={iters}))
log_processor = dict(by_epoch=False, window_size=1)
randomness = {randomness}
"""  # noqa: E501
CLS_DATA = """
ds = dict(data_root={root!r}, val_size={val_size})
train_dataloader = dict(batch_size={batch}, num_workers=0, persistent_workers=False,
                        {train_data})
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=ds)
test_dataloader = dict(num_workers=0, dataset=ds)
param_scheduler = dict(_delete_=True, type='ConstantLR', factor=1.0, by_epoch=False)
"""  # noqa: E501
DET_DATA = """
data_root = {root!r}
train_dataloader = dict(batch_size={batch}, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
"""  # noqa: E501


def tiny_cfg(base, iters=3, randomness='dict(seed=0)'):
    """Config text: ``base`` trained ``iters`` iterations, logged every one,
    saved at the end."""
    return TINY.format(base=base, iters=iters, randomness=randomness)


def cls_data_cfg(root,
                 batch=8,
                 val_size=8,
                 train_data='dataset=dict(max_samples=32, **ds)'):
    """Config text: the demo classifier's dataloaders on the IDX files in
    ``root``."""
    return CLS_DATA.format(
        root=root, batch=batch, val_size=val_size, train_data=train_data)


def det_data_cfg(root, batch=4):
    """Config text: the demo detector's dataloaders on the shapes set in
    ``root`` (ends in /)."""
    return DET_DATA.format(root=root, batch=batch)


# ------------------------------------------------------------------
# subprocesses


def popen_logged(args, cwd, env=None):
    """Start ``args`` with stdout and stderr merged into one text pipe."""
    return subprocess.Popen(
        args,
        cwd=str(cwd),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


def popen_train(cfg, work_dir, *args):
    """``tools/train.py cfg --work-dir work_dir *args`` on CPU, from
    ``work_dir``'s parent."""
    return popen_logged(
        [sys.executable, TRAIN,
         str(cfg), '--work-dir',
         str(work_dir), *args], work_dir.parent, ENV)


def finish(proc, timeout=400):
    """Wait for ``proc`` (started by ``popen_train``); it must succeed. Returns
    its log."""
    out = proc.communicate(timeout=timeout)[0]
    assert proc.returncode == 0, out[-4000:]
    return out


def popen_python(*args, cwd):
    """``python *args`` with separate stdout and stderr text pipes."""
    return subprocess.Popen([sys.executable, *map(str, args)],
                            cwd=str(cwd),
                            text=True,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait(proc, timeout):
    """``(returncode, stdout, stderr)`` of ``proc``; killed (and the timeout
    raised) if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def kill_running(procs):
    """Kill whichever of ``procs`` still run (a fixture's teardown)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def load_tool(path):
    """Import a script (``tools/``, ``benchmarks/``) as a module named after
    its file."""
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------
# scalars.json


def _loss_entries(path):
    with open(path) as f:
        entries = [json.loads(line) for line in f]
    return [e for e in entries if 'loss' in e]


def scalars(work_dir):
    """Per-step training scalars of the one run in ``work_dir``."""
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    return {e['step']: e for e in _loss_entries(path)}


def scalars_all_runs(work_dir):
    """Per-step training scalars of every run in ``work_dir`` (later runs win),
    without the
    wall-clock entries."""
    out = {}
    for path in sorted(
            glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        for entry in _loss_entries(path):
            out[entry['step']] = {
                k: v
                for k, v in entry.items() if k not in NOT_COMPARED
            }
    return out


# ------------------------------------------------------------------ models


def build_cls(cfg, registry=None):
    """Build in the mmpretrain scope whatever default scope other tests left
    behind."""
    from mmengine.registry import DefaultScope
    if registry is None:
        from mmpretrain.registry import MODELS as registry
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return registry.build(cfg)


def build_det(cfg):
    """Build in the mmdet scope whatever default scope other tests left behind.
    """
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


def det_samples(n, size):
    """``n`` DetDataSamples with the metainfo of unscaled ``size`` x ``size``
    images."""
    from mmdet.structures import DetDataSample
    samples = []
    for _ in range(n):
        s = DetDataSample()
        s.set_metainfo(
            dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size),
                scale_factor=(1.0, 1.0),
                batch_input_shape=(size, size)))
        samples.append(s)
    return samples
