"""``pip install .`` into an environment that already has the OpenMMLab stack.

Each test makes a new venv whose only view of the stack is a folder of links
to this venv's torch, mmcv, mmengine, mmdet, mmpretrain, ... (cds_mm's own
editable install left out), installs a copy of the repository into it with
``pip install --no-index`` and checks that nothing but cds_mm was installed,
that the wheel carries ``.mim/{configs,tools,model-index.yml}`` and that the
installed package trains, through ``mim`` and through the upstream mmdet
tool, from a config outside the repository. The lowest mmdet / mmpretrain that
``requirements/mminstall.txt`` claims are tested the same way, from the wheels
``tools/setup_env.sh`` caches.
"""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

import pytest
from cds_test_utils import REPO_ROOT

SITE = sysconfig.get_paths()['purelib']
CACHE = os.environ.get('CDS_CACHE', osp.expanduser('~/.cache/cds_mm/wheels'))
DEMO = 'demo/faster-rcnn_r18-w16_fpn_cds_shapes.py'
pytestmark = pytest.mark.slow


def _run(cmd, cwd, timeout=600, env=None):
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, (cmd, proc.stdout[-3000:],
                                  proc.stderr[-3000:])
    return proc.stdout + proc.stderr


def _repo_copy(dst):
    """The tracked and new files of the repository (no venv, no data)."""
    files = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True).stdout.split()
    for rel in files:
        if osp.isfile(osp.join(REPO_ROOT, rel)):
            os.makedirs(osp.dirname(osp.join(dst, rel)), exist_ok=True)
            shutil.copy2(osp.join(REPO_ROOT, rel), osp.join(dst, rel))
    return dst


def _overlay_venv(root, extra_wheels=()):
    """A new venv that sees this venv's packages except cds_mm."""
    venv, view = osp.join(root, 'venv'), osp.join(root, 'stack')
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv],
                   check=True)
    os.makedirs(view)
    for name in os.listdir(SITE):
        if name.startswith(('cds_mm', '__editable__', '_cds_mm')) \
                or name.endswith('.pth'):
            continue
        os.symlink(osp.join(SITE, name), osp.join(view, name))
    python = osp.join(venv, 'bin', 'python')
    site = subprocess.run([
        python, '-c', 'import sysconfig; '
        'print(sysconfig.get_paths()["purelib"])'
    ],
                          capture_output=True,
                          text=True,
                          check=True).stdout.strip()
    with open(osp.join(site, 'stack.pth'), 'w') as f:
        f.write(view + '\n')
    if extra_wheels:  # into the venv itself, in front of the stack view
        _run([
            python, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
            *extra_wheels
        ],
             cwd=root)
    return python, site


def _pip_install_repo(python, root):
    src = _repo_copy(osp.join(root, 'src'))
    out = _run([
        python, '-m', 'pip', 'install', '--no-index', '--no-build-isolation',
        src
    ],
               cwd=root)
    return out


def _shapes_options(data):
    opts = []
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val'), ('test_dataloader',
                                                      'val')):
        opts += [
            f'{loader}.dataset.data_root={data}/', f'{loader}.num_workers=0',
            f'{loader}.persistent_workers=False'
        ]
    ann = f'{data}/annotations/instances_val.json'
    opts += [
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        'train_cfg.val_interval=10'
    ]
    return opts


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('pip_install'))
    python, site = _overlay_venv(root)
    before = set(os.listdir(site))
    out = _pip_install_repo(python, root)
    added = set(os.listdir(site)) - before
    data = osp.join(root, 'shapes')
    _run([
        python, '-c', 'import sys; from cds_mm.datasets import '
        'make_shapes_coco; make_shapes_coco(sys.argv[1], num_train=8, '
        'num_val=4, img_size=64)', data
    ],
         cwd=root)
    return dict(
        root=root, python=python, site=site, added=added, out=out, data=data)


def test_installs_cds_mm_only(installed):
    added = {n for n in installed['added'] if not n.startswith('__pycache')}
    assert {n.split('-')[0] for n in added} == {'cds_mm'}, added
    assert 'Successfully installed cds_mm' in installed['out'].replace(
        'cds-mm', 'cds_mm'), installed['out'][-2000:]
    mim = osp.join(installed['site'], 'cds_mm', '.mim')
    for rel in ('model-index.yml', 'tools/train.py', 'configs/' + DEMO,
                'configs/_base_/cds/contrast_colour.py'):
        assert osp.isfile(osp.join(mim, rel)), rel


def test_mim_search_lists_our_configs(installed):
    pytest.importorskip('mim')
    out = _run([installed['python'], '-m', 'mim', 'search', 'cds_mm'],
               cwd=installed['root'])
    assert 'faster-rcnn_r18-w16_fpn_cds_shapes' in out, out[-3000:]
    assert 'resnet18_cds_1xb128_cifar100' in out, out[-3000:]


def _user_config(root, base):
    """A user's config outside the repository: a base and custom_imports."""
    cfg = osp.join(root, f'my_config_{len(os.listdir(root))}.py')
    with open(cfg, 'w') as f:
        f.write(f"_base_ = [{base!r}]\n"
                "custom_imports = dict(imports=['cds_mm', 'cds_mm.compat'],"
                ' allow_failed_imports=False)\n')
    return cfg


def _train_args(installed, work):
    return [
        '--work-dir', work, '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=4', *_shapes_options(installed['data'])
    ]


def test_mim_train_runs_the_installed_tool(installed):
    # mim runs the tools/train.py the wheel carries, on a user's config
    base = osp.join(installed['site'], 'cds_mm', '.mim', 'configs', DEMO)
    cfg = _user_config(installed['root'], base)
    work = osp.join(installed['root'], 'mim_train')
    out = _run([
        installed['python'], '-m', 'mim', 'train', 'cds_mm', cfg,
        *_train_args(installed, work)
    ],
               cwd=installed['root'])
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), out[-3000:]
    assert 'loss_cds_s0' in out, out[-3000:]


def test_upstream_mmdet_tool_trains_our_config(installed):
    # mmdet's own tools/train.py, on the config the wheel installed
    base = osp.join(installed['site'], 'cds_mm', '.mim', 'configs', DEMO)
    cfg = _user_config(installed['root'], base)
    import mmdet
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    work = osp.join(installed['root'], 'upstream_train')
    out = _run([installed['python'], tool, cfg, *_train_args(installed, work)],
               cwd=installed['root'])
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), out[-3000:]
    assert 'loss_cds_inst_s0' in out, out[-3000:]


def test_lowest_claimed_mmdet_and_mmpretrain(tmp_path):
    wheels = sorted(glob.glob(osp.join(CACHE, 'lowest', '*.whl')))
    names = {osp.basename(w).split('-')[:2][0] for w in wheels}
    if names != {'mmdet', 'mmpretrain'}:
        pytest.skip(f'no cached lowest wheels in {CACHE}/lowest '
                    '(tools/setup_env.sh downloads them)')
    root = str(tmp_path)
    python, _ = _overlay_venv(root, extra_wheels=wheels)
    _pip_install_repo(python, root)
    versions = _run([
        python, '-c', 'import mmdet, mmpretrain; '
        'print(mmdet.__version__, mmpretrain.__version__)'
    ],
                    cwd=root).split()
    assert versions[:2] == ['3.2.0', '1.1.0'], versions
    tests = osp.join(REPO_ROOT, 'tests', 'test_import_side_effects.py')
    out = _run([
        python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--rootdir',
        root, tests, '-k', 'one_library or patches'
    ],
               cwd=osp.join(REPO_ROOT, 'tests'))
    assert ' passed' in out and 'failed' not in out, out[-3000:]


def test_mim_install_editable(tmp_path):
    # mim adds mmcv find links from MMCV_BASE_URL: a local one keeps the
    # test offline (a user's default points at download.openmmlab.com)
    pytest.importorskip('mim')
    root = str(tmp_path)
    python, site = _overlay_venv(root)
    before = set(os.listdir(site))
    src = _repo_copy(osp.join(root, 'src'))
    build = osp.join(CACHE, 'build')
    if not glob.glob(osp.join(build, 'setuptools-*.whl')):
        pytest.skip(f'no cached setuptools wheel in {build} '
                    '(tools/setup_env.sh downloads it)')
    env = dict(os.environ, MMCV_BASE_URL=f'file://{root}/no-mmcv-index')
    # build isolation, as a user's `mim install -e .`, but from the cache
    out = _run([
        python, '-m', 'mim', 'install', '--no-index', '--find-links', build,
        '-e', src
    ],
               cwd=root,
               env=env)
    added = {
        n.split('-')[0]
        for n in set(os.listdir(site)) - before
        if not n.startswith('__pycache')
    }
    assert added and all('cds_mm' in n for n in added), (added, out[-2000:])
    where = _run([
        python, '-c', 'import os.path as osp, cds_mm; '
        'print(osp.dirname(cds_mm.__file__))'
    ],
                 cwd=root).strip()
    assert osp.samefile(where, osp.join(src, 'cds_mm')), where
    mim = osp.join(src, 'cds_mm', '.mim')
    for rel in ('model-index.yml', 'tools/train.py', 'configs/' + DEMO):
        assert osp.isfile(osp.join(mim, rel)), rel
