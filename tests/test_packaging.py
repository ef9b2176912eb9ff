"""One version source (the metafiles are checked in tests/configs/)."""
import os.path as osp
import re

from cds_test_utils import REPO_ROOT


def test_one_version_source():
    import cds_mm
    with open(osp.join(REPO_ROOT, 'cds_mm', 'version.py')) as f:
        declared = re.search(r"__version__ = '([^']+)'", f.read()).group(1)
    assert cds_mm.__version__ == declared
    with open(osp.join(REPO_ROOT, 'setup.py')) as f:
        assert 'version=get_version()' in f.read()
    assert cds_mm.version_info[:2] == tuple(
        int(p) for p in declared.split('.')[:2])


def _setup_kwargs():
    """The keyword arguments setup.py passes to ``setuptools.setup``."""
    import runpy
    from unittest import mock
    with mock.patch('setuptools.setup') as setup, \
            mock.patch('sys.argv', ['setup.py', '--name']):
        runpy.run_path(osp.join(REPO_ROOT, 'setup.py'), run_name='__main__')
    return setup.call_args.kwargs


def test_metadata_has_a_source_url_and_the_setuptools_pin():
    kwargs = _setup_kwargs()
    assert kwargs['url'].startswith('https://'), kwargs.get('url')  # mim list
    # mmengine needs pkg_resources, which setuptools 82 removed
    assert 'setuptools<81' in kwargs['install_requires']


def test_mim_tools_leave_out_the_repository_scripts(tmp_path, monkeypatch):
    import runpy
    setup_py = runpy.run_path(osp.join(REPO_ROOT, 'setup.py'))
    for rel in ('tools/train.py', 'tools/lint.sh', 'tools/setup_env.sh',
                'tools/run_tests.sh', 'tools/dist_train.sh',
                'tools/dataset_converters/make_shapes_coco.py', 'configs/a.py',
                'model-index.yml'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text('')
    add = setup_py['add_mim_extension']
    monkeypatch.setitem(add.__globals__, 'REPO', str(tmp_path))
    monkeypatch.setattr('sys.argv', ['setup.py', 'bdist_wheel'])
    add()
    tools = tmp_path / 'cds_mm' / '.mim' / 'tools'
    shipped = sorted(
        str(p.relative_to(tools)) for p in tools.rglob('*') if p.is_file())
    assert shipped == [
        'dataset_converters/make_shapes_coco.py', 'dist_train.sh', 'train.py'
    ]
