"""cds_mm: Contrastive Deep Supervision for mmpretrain and mmdet models.

``pip install .`` / ``pip install -e .`` / ``mim install -e .`` add cds_mm to
an environment that already has torch, mmcv, mmengine and mmpretrain and/or
mmdet, and touch none of them (they are extras, see ``requirements/``). The
wheel carries ``cds_mm/.mim/{configs,tools,model-index.yml}`` as mmpretrain's
does, so ``mim search cds_mm`` and ``mim train cds_mm CONFIG`` work, and a
config outside the clone inherits a shipped one by its path under
``<site-packages>/cds_mm/.mim/configs/``. ``_base_ = 'cds_mm::...'`` does
not work: mmengine resolves ``package::`` bases only for the OpenMMLab
packages it lists. ``tools/`` in the wheel holds what a user runs; the
repository's own scripts (set-up, tests, lint) stay out.
"""
import os
import os.path as osp
import shutil
import sys
import warnings
from setuptools import find_packages, setup

REPO = osp.dirname(osp.abspath(__file__))
# mim list shows it as the package's source; the paper's page until the
# repository has a public address
URL = 'https://arxiv.org/abs/2207.05306'
# scripts of the repository itself, meaningless in an installed package
DEV_TOOLS = ('setup_env.sh', 'run_tests.sh', 'lint.sh')


def readme():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join(REPO, 'cds_mm', 'version.py')) as f:
        exec(compile(f.read(), 'cds_mm/version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname):
    """The requirement lines of ``requirements/<fname>`` (``-r`` followed)."""
    out = []
    with open(osp.join(REPO, fname)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line.startswith('-r '):
                out += parse_requirements(
                    osp.join(osp.dirname(fname), line[3:].strip()))
            elif line:
                out.append(line)
    return out


def add_mim_extension():
    """Put configs, tools and model-index.yml under ``cds_mm/.mim``.

    Symlinks for an editable install (``develop`` / ``editable_wheel``),
    copies for a wheel or an sdist, as mmpretrain's setup.py does.
    """
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'build_py'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(REPO, 'cds_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src, dst = osp.join(REPO, name), osp.join(mim_path, name)
        if not osp.exists(src):
            warnings.warn(f'cannot add {src} to the mim extension: missing')
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(
                src,
                dst,
                ignore=shutil.ignore_patterns('__pycache__', *DEV_TOOLS))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='cds_mm',
        version=get_version(),
        description='Contrastive Deep Supervision (ECCV 2022) for mmpretrain '
        'classifiers and mmdet detectors',
        long_description=readme(),
        long_description_content_type='text/markdown',
        url=URL,
        project_urls={'Paper': 'https://arxiv.org/abs/2207.05306'},
        keywords='computer vision, contrastive learning, deep supervision, '
        'openmmlab',
        packages=find_packages(include=['cds_mm', 'cds_mm.*']),
        include_package_data=True,
        license='Apache License 2.0',
        python_requires='>=3.8',
        classifiers=[
            'License :: OSI Approved :: Apache Software License',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
        ],
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'cls': ['mmpretrain>=1.1.0,<1.3.0'],
            'det': ['mmdet>=3.2.0,<3.4.0', 'pycocotools'],
            'mim': parse_requirements('requirements/mminstall.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
        },
        zip_safe=False)
