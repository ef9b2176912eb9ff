"""The README's "into your own OpenMMLab environment" route, as a new user
takes it, in a clean venv (no overlay of the development one).

The module makes one venv from the interpreter running the tests and
installs, from the package registries (pip's own cache makes the second run
fast): ``torch==2.14.1 torchvision==0.29.1`` (``tools/setup_env.sh``'s
pins), the mmcv 2.1.0 wheel ``tools/setup_env.sh`` caches (``$CDS_CACHE``,
as a user has theirs), then a copy of this repository with
``pip install "<copy>[mim,det]"``: mmengine, mmdet, mmpretrain, setuptools
... at whatever versions pip picks within the ranges ``requirements/``
declares. Then, from a folder outside the clone:

- mmdet's ``tools/train.py`` trains the shipped shapes detection config for a
  few iterations, ``--resume`` continues it, and mmdet's ``tools/test.py``
  (with the shipped config and with the config the run dumped into its work
  dir) and ours load the checkpoint (torch >= 2.6 safe loading: the shipped
  configs import ``cds_mm.compat``);
- mmpretrain's ``tools/train.py`` trains the shipped Fashion-MNIST config and
  its ``tools/test.py`` loads the checkpoint with the dumped config and with a
  user's child of the shipped config that changes only ``data_root``, which
  ``DataRootCheckHook`` warns about.

Without ``setuptools<81`` in ``requirements/runtime.txt`` pip picks a
setuptools without ``pkg_resources`` and every config load fails.
The shipped configs reach their data through ``CDS_DATA_ROOT``. The venv
(about 5.5 GB, torch with its CUDA libraries) is removed at the end.
"""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

import pytest
from cds_test_utils import REPO_ROOT, write_fashion_idx

pytestmark = pytest.mark.slow

CACHE = os.environ.get('CDS_CACHE', osp.expanduser('~/.cache/cds_mm/wheels'))
TORCH_PINS = ['torch==2.14.1', 'torchvision==0.29.1']
DET_CFG = 'demo/faster-rcnn_r18-w16_fpn_cds_shapes.py'
CLS_CFG = 'demo/resnet18-w16_cds_1xb128_fashionmnist.py'
DEV_TOOLS = ('setup_env.sh', 'run_tests.sh', 'lint.sh')
# tiny runs: no worker processes, no validation during training
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
QUICK = [f'{k}.num_workers=0' for k in LOADERS
         ] + [f'{k}.persistent_workers=False' for k in LOADERS]
CLS_OPTS = QUICK + [
    'train_dataloader.dataset.val_size=8', 'val_dataloader.dataset.val_size=8',
    'train_dataloader.batch_size=8'
]


def _run(cmd, cwd, env=None, timeout=900):
    """Run ``cmd``, which must succeed; stdout and stderr together."""
    start = time.time()
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    print(f'[{time.time() - start:6.1f} s] {" ".join(map(str, cmd))[:200]}')
    if proc.returncode != 0:
        pytest.fail(
            f'exit {proc.returncode}: {" ".join(map(str, cmd))}\n'
            f'{proc.stdout[-4000:]}',
            pytrace=False)
    return proc


def _repo_copy(dst):
    """The files of the repository a user clones: tracked and new files, no
    venv, data or work dirs (a tree that is not a git clone is copied
    whole, less those)."""
    listed = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True)
    if listed.returncode != 0:
        shutil.copytree(
            REPO_ROOT,
            dst,
            ignore=shutil.ignore_patterns('.venv', '.git', 'work_dirs', 'data',
                                          '__pycache__', '.mim', 'build',
                                          '*.egg-info'))
        return dst
    for rel in listed.stdout.split():
        if osp.isfile(osp.join(REPO_ROOT, rel)):
            os.makedirs(osp.dirname(osp.join(dst, rel)), exist_ok=True)
            shutil.copy2(osp.join(REPO_ROOT, rel), osp.join(dst, rel))
    return dst


@pytest.fixture(scope='module')
def venv(tmp_path_factory):
    wheels = sorted(glob.glob(osp.join(CACHE, 'mmcv-2.1.0-*.whl')))
    if not wheels:
        pytest.skip(f'no cached mmcv 2.1.0 wheel in {CACHE} '
                    '(tools/setup_env.sh builds it)')
    root = str(tmp_path_factory.mktemp('clean_venv'))
    path = osp.join(root, 'venv')
    env = dict(
        os.environ,
        CUDA_VISIBLE_DEVICES='',
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1')
    for key in ('PYTHONPATH', 'VIRTUAL_ENV', 'CDS_DATA_ROOT'):
        env.pop(key, None)
    try:
        _run([sys.executable, '-m', 'venv', path], root, env)
        python = osp.join(path, 'bin', 'python')
        # --no-compile: no .pyc for the ~5 GB (compiled on import instead)
        pip = [
            python, '-m', 'pip', 'install', '--disable-pip-version-check',
            '--no-compile'
        ]
        pins = osp.join(root, 'pins.txt')  # no other torch, ever
        with open(pins, 'w') as f:
            f.write('\n'.join(TORCH_PINS) + '\n')
        _run(pip + TORCH_PINS, root, env, timeout=1800)
        _run(pip + ['-c', pins, wheels[-1]], root, env)
        src = _repo_copy(osp.join(root, 'src'))
        _run(pip + ['-c', pins, f'{src}[mim,det]'], root, env)
        shutil.rmtree(src)  # nothing may come from the copy now
        site = _run([
            python, '-c', 'import sysconfig; '
            'print(sysconfig.get_paths()["purelib"])'
        ], root, env).stdout.strip().splitlines()[-1]
        yield dict(root=root, python=python, site=site, env=env)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _cds_env(venv, data):
    return dict(venv['env'], CDS_DATA_ROOT=data)


def _upstream_tool(venv, package, name):
    return osp.join(venv['site'], package, '.mim', 'tools', name)


def _shipped(venv, rel):
    return osp.join(venv['site'], 'cds_mm', '.mim', 'configs', rel)


def test_pip_picks_a_working_stack(venv):
    # the versions first, so that a failing import shows what pip picked
    out = _run([
        venv['python'], '-c', 'import torch, mmcv, mmengine, mmdet, '
        'mmpretrain, setuptools; '
        'print("@@", torch.__version__, mmcv.__version__, '
        'mmengine.__version__, mmdet.__version__, mmpretrain.__version__, '
        'setuptools.__version__, flush=True); import pkg_resources'
    ], venv['root'], venv['env']).stdout.split('@@')[1].split()[:6]
    print('torch, mmcv, mmengine, mmdet, mmpretrain, setuptools:', out)
    assert out[0].split('+')[0] == '2.14.1' and out[1] == '2.1.0', out
    _run([venv['python'], '-m', 'pip', 'check'], venv['root'], venv['env'])


def test_wheel_holds_what_a_user_runs(venv):
    tools = osp.join(venv['site'], 'cds_mm', '.mim', 'tools')
    for rel in ('train.py', 'test.py',
                'dataset_converters/make_shapes_coco.py'):
        assert osp.isfile(osp.join(tools, rel)), rel
    assert not [n for n in DEV_TOOLS if osp.exists(osp.join(tools, n))]
    (meta, ) = glob.glob(osp.join(venv['site'], 'cds_mm-*', 'METADATA'))
    with open(meta) as f:
        home = [line for line in f if line.startswith('Home-page:')]
    assert home and home[0].split(':', 1)[1].strip(), home  # mim list


@pytest.fixture(scope='module')
def det_run(venv):
    """mmdet's tools/train.py, one epoch (2 iterations) of the shipped shapes
    config."""
    data = osp.join(venv['root'], 'shapes')
    _run([
        venv['python'], '-c', 'import sys; from cds_mm.datasets import '
        'make_shapes_coco; make_shapes_coco(sys.argv[1], num_train=8, '
        'num_val=4, img_size=64)', data
    ], venv['root'], venv['env'])
    work = osp.join(venv['root'], 'det')
    out = _run([
        venv['python'],
        _upstream_tool(venv, 'mmdet', 'train.py'),
        _shipped(venv, DET_CFG), '--work-dir', work, '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=10', *QUICK
    ], venv['root'], _cds_env(venv, data)).stdout
    assert 'loss_cds_inst_s0' in out, out[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), out[-3000:]
    return dict(data=data, work=work)


def test_upstream_mmdet_resumes(venv, det_run):
    out = _run([
        venv['python'],
        _upstream_tool(venv, 'mmdet', 'train.py'),
        _shipped(venv, DET_CFG), '--work-dir', det_run['work'], '--resume',
        osp.join(det_run['work'], 'epoch_1.pth'), '--cfg-options',
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=10', *QUICK
    ], venv['root'], _cds_env(venv, det_run['data'])).stdout
    assert 'resumed epoch: 1' in out, out[-3000:]
    assert osp.isfile(osp.join(det_run['work'], 'epoch_2.pth'))


@pytest.mark.parametrize('config', ['shipped', 'dumped'])
def test_upstream_mmdet_test_loads_the_checkpoint(venv, det_run, config):
    cfg = (
        _shipped(venv, DET_CFG) if config == 'shipped' else osp.join(
            det_run['work'], osp.basename(DET_CFG)))
    assert osp.isfile(cfg), cfg
    out = _run([
        venv['python'],
        _upstream_tool(venv, 'mmdet', 'test.py'), cfg,
        osp.join(det_run['work'], 'epoch_1.pth'), '--work-dir',
        osp.join(venv['root'], f'det_test_{config}'), '--cfg-options', *QUICK
    ], venv['root'], _cds_env(venv, det_run['data'])).stdout
    assert 'Load checkpoint from' in out and 'Epoch(test)' in out, out[-3000:]


def test_our_test_tool_loads_the_checkpoint(venv, det_run):
    out = _run([
        venv['python'],
        osp.join(venv['site'], 'cds_mm', '.mim', 'tools', 'test.py'),
        _shipped(venv, DET_CFG),
        osp.join(det_run['work'], 'epoch_1.pth'), '--work-dir',
        osp.join(venv['root'], 'det_test_ours'), '--cfg-options', *QUICK
    ], venv['root'], _cds_env(venv, det_run['data'])).stdout
    assert 'Load checkpoint from' in out and 'Epoch(test)' in out, out[-3000:]


@pytest.fixture(scope='module')
def cls_run(venv):
    """mmpretrain's tools/train.py, one epoch (5 iterations) of the shipped
    Fashion-MNIST config on 48 generated images."""
    data = osp.join(venv['root'], 'fmnist')
    write_fashion_idx(data)
    work = osp.join(venv['root'], 'cls')
    out = _run([
        venv['python'],
        _upstream_tool(venv, 'mmpretrain', 'train.py'),
        _shipped(venv, CLS_CFG), '--work-dir', work, '--cfg-options',
        'train_cfg.max_epochs=1', *CLS_OPTS
    ], venv['root'], _cds_env(venv, data)).stdout
    assert 'loss_cds_s0' in out, out[-3000:]
    (ckpt, ) = glob.glob(osp.join(work, 'best_*.pth'))
    return dict(data=data, work=work, ckpt=ckpt)


def _mmpretrain_test(venv, cls_run, cfg, name):
    out = _run([
        venv['python'],
        _upstream_tool(venv, 'mmpretrain', 'test.py'), cfg, cls_run['ckpt'],
        '--work-dir',
        osp.join(venv['root'], name), '--cfg-options', *CLS_OPTS
    ], venv['root'], _cds_env(venv, cls_run['data'])).stdout
    assert 'Load checkpoint from' in out and 'accuracy/top1' in out, (
        cfg, out[-3000:])
    return out


def test_upstream_mmpretrain_test_loads_the_checkpoint(venv, cls_run):
    # the config the run dumped into its work dir
    _mmpretrain_test(venv, cls_run,
                     osp.join(cls_run['work'], osp.basename(CLS_CFG)),
                     'cls_test_dumped')


def test_upstream_mmpretrain_test_warns_about_a_data_root_only_child(
        venv, cls_run):
    # a user's child of the shipped config that changes only data_root: the
    # checkpoint loads, and DataRootCheckHook names the keys still elsewhere
    child = osp.join(venv['root'], 'my_child.py')
    with open(child, 'w') as f:
        f.write(f'_base_ = [{_shipped(venv, CLS_CFG)!r}]\n'
                "data_root = 'my_other_data'\n")
    out = _mmpretrain_test(venv, cls_run, child, 'cls_test_child')
    assert "data_root='my_other_data' (top level)" in out, out[-3000:]
    assert 'test_dataloader.dataset.data_root' in out, out[-3000:]
