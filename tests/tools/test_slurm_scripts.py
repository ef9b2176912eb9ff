"""Argument handling of tools/slurm_train.sh and tools/slurm_test.sh.

A stub ``srun`` first on ``PATH`` records the arguments it gets (one per
line, so word splitting is visible) and the ``PYTHONPATH`` it sees, then
exits with ``STUB_EXIT``. Nothing is trained.
"""
import os
import os.path as osp
import shutil
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools')

STUB = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$STUB_ARGS"
printf '%s' "$PYTHONPATH" > "$STUB_ARGS.pythonpath"
exit "${STUB_EXIT:-0}"
"""

pytestmark = pytest.mark.skipif(
    shutil.which('bash') is None, reason='needs bash')


def run_script(tmp_path, script, args, **env):
    """Run ``tools/<script>`` with the stub srun; return (proc, argv)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / 'srun'
    stub.write_text(STUB)
    stub.chmod(0o755)
    record = tmp_path / 'srun_args.txt'
    if record.exists():
        record.unlink()
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS',
                     'PYTHON')
    }
    full_env.update(
        PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
        STUB_ARGS=str(record),
        **env)
    proc = subprocess.run(['bash', osp.join(TOOLS, script), *args],
                          cwd=str(tmp_path),
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=60)
    argv = record.read_text().splitlines() if record.exists() else None
    return proc, argv


def test_train_defaults_match_mmdet(tmp_path):
    proc, argv = run_script(tmp_path, 'slurm_train.sh',
                            ['gpu', 'cds-r50', 'cfg.py', 'work_dirs/x'])
    assert proc.returncode == 0, proc.stderr
    assert argv == [
        '-p', 'gpu', '--job-name=cds-r50', '--gres=gpu:8', '--ntasks=8',
        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        'python', '-u',
        osp.join(TOOLS, 'train.py'), 'cfg.py', '--work-dir=work_dirs/x',
        '--launcher=slurm'
    ]
    # the repo root is on PYTHONPATH, as in mmdet's script
    pythonpath = (tmp_path / 'srun_args.txt.pythonpath').read_text()
    root = pythonpath.split(os.pathsep)[0]
    assert osp.realpath(root) == osp.realpath(REPO)


def test_train_environment_and_extra_args(tmp_path):
    extra = ['--cfg-options', 'model.mode=off', 'work_dir=a b', '--amp']
    proc, argv = run_script(
        tmp_path,
        'slurm_train.sh', ['p1', 'job', 'c.py', 'wd', *extra],
        GPUS='16',
        GPUS_PER_NODE='4',
        CPUS_PER_TASK='2',
        SRUN_ARGS='--qos=high --time=1:00:00',
        PYTHON='python3.11')
    assert proc.returncode == 0, proc.stderr
    assert argv[:10] == [
        '-p', 'p1', '--job-name=job', '--gres=gpu:4', '--ntasks=16',
        '--ntasks-per-node=4', '--cpus-per-task=2', '--kill-on-bad-exit=1',
        '--qos=high', '--time=1:00:00'
    ]
    # the extra arguments arrive in order, one containing a space kept whole
    assert argv[10:] == [
        'python3.11', '-u',
        osp.join(TOOLS, 'train.py'), 'c.py', '--work-dir=wd',
        '--launcher=slurm', *extra
    ]


def test_test_script_passes_checkpoint_and_args(tmp_path):
    proc, argv = run_script(
        tmp_path,
        'slurm_test.sh',
        ['gpu', 'eval', 'c.py', 'ep_12.pth', '--out', 'r.pkl'],
        GPUS='2',
        GPUS_PER_NODE='1')
    assert proc.returncode == 0, proc.stderr
    assert argv == [
        '-p', 'gpu', '--job-name=eval', '--gres=gpu:1', '--ntasks=2',
        '--ntasks-per-node=1', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        'python', '-u',
        osp.join(TOOLS, 'test.py'), 'c.py', 'ep_12.pth', '--launcher=slurm',
        '--out', 'r.pkl'
    ]


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_too_few_arguments_print_usage_and_skip_srun(tmp_path, script):
    proc, argv = run_script(tmp_path, script, ['gpu', 'job', 'c.py'])
    assert proc.returncode == 2
    assert 'usage:' in proc.stderr
    assert 'PARTITION JOB_NAME CONFIG' in proc.stderr
    assert argv is None  # srun never ran


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_srun_exit_status_is_returned(tmp_path, script):
    proc, argv = run_script(
        tmp_path, script, ['gpu', 'job', 'c.py', 'x'], STUB_EXIT='3')
    assert argv is not None and proc.returncode == 3
