"""The commit a benchmark records is dirty for code changes only."""
import importlib.util
import os.path as osp
import subprocess

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    'common', osp.join(REPO, 'benchmarks', 'common.py'))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def git(repo, *cmd):
    subprocess.run(['git', *cmd], cwd=repo, check=True, capture_output=True)


def test_rewritten_results_do_not_make_the_commit_dirty(tmp_path, monkeypatch):
    (tmp_path / 'benchmarks' / 'results').mkdir(parents=True)
    code, results = tmp_path / 'bench.py', tmp_path / 'benchmarks' / \
        'results' / 'x.json'
    code.write_text('a = 1\n')
    results.write_text('{}\n')
    git(tmp_path, 'init', '-q')
    git(tmp_path, 'add', '.')
    git(tmp_path, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm',
        'x')
    monkeypatch.setattr(common, 'REPO', str(tmp_path))
    head = common.git_commit()
    assert len(head) == 40
    results.write_text('{"runs": []}\n')
    assert common.git_commit() == head
    code.write_text('a = 2\n')
    assert common.git_commit() == head + '+dirty'
