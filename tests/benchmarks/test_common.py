"""What the benchmarks share: the commit they record, the checkpoint they
test."""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
from cds_test_utils import REPO_ROOT, load_tool

common = load_tool(osp.join(REPO_ROOT, 'benchmarks', 'common.py'))


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


def test_a_resumed_run_tests_the_best_epoch_of_all_attempts(tmp_path):
    work = str(tmp_path)
    assert common.best_checkpoint(work, 'acc', {1: 0.5}) == (None, None)
    # cut short after epoch 2's val (its best); epoch_2.pth, saved before
    # that val, did not know it, so the resumed run saved epoch 3 as its best
    for epoch in (2, 3):
        (tmp_path / f'best_acc_epoch_{epoch}.pth').write_bytes(b'')
    val = {1: 0.1, 2: 0.5, 3: 0.4, 4: 0.2}
    assert common.best_checkpoint(work, 'acc',
                                  val) == (osp.join(work,
                                                    'best_acc_epoch_2.pth'), 2)
    # a tie goes to the earlier epoch, as rule='greater' keeps it
    val[3] = 0.5
    assert common.best_checkpoint(work, 'acc', val)[1] == 2


def test_progress_reads_only_this_attempt_at_its_own_pace(tmp_path):
    log = tmp_path / 'train.log'
    # the attempt cut short: its val must not be reported as this one's
    log.write_text('Epoch(train) [1][20/20] \n'
                   'Epoch(val) [1][5/5]    accuracy/top1: 10.0\n')
    lines = [
        'Epoch(train) [2][10/20]', 'Epoch(train) [2][20/20]',
        'Epoch(val) [2][5/5]    accuracy/top1: 50.0'
    ]
    script = 'import time\n' + ''.join(
        f'print({line!r}, flush=True); time.sleep(0.6)\n' for line in lines)
    reports = []
    common.watch_training(
        [sys.executable, '-c', script],
        str(log),
        4,
        re.compile(r'Epoch\(val\) \[(\d+)\].*top1: ([\d.]+)'),
        lambda *a: reports.append(a),
        poll_s=0.1)
    assert [r[:2]
            for r in reports] == [('epoch 2/4 iter 20/20', None),
                                  ('epoch 2/4 iter 20/20', ('2', '50.0'))]
    # 10 iterations since the attempt's first line took ~0.6 s; 40 are left
    assert 1.5 < reports[0][2] < 4
    with pytest.raises(SystemExit, match='failed'):
        common.watch_training([sys.executable, '-c', 'raise SystemExit(3)'],
                              str(log), 4, re.compile('x'), print)


def test_progress_of_an_iteration_based_loop(tmp_path):
    log = tmp_path / 'train.log'
    lines = [
        'Iter(train) [ 20/120]', 'Iter(train) [ 40/120]',
        'Iter(val) [5/5]    accuracy/top1: 61.5', 'Iter(train) [ 50/120]'
    ]
    script = 'import time\n' + ''.join(
        f'print({line!r}, flush=True); time.sleep(0.6)\n' for line in lines)
    reports = []
    common.watch_training([sys.executable, '-c', script],
                          str(log),
                          6,
                          re.compile(r'Iter\(val\).*top1: ([\d.]+)'),
                          lambda *a: reports.append(a),
                          poll_s=0.1,
                          iters_per_epoch=20)
    # iteration 40 is the end of epoch 2, 50 is in epoch 3 (of 6)
    assert [r[:2] for r in reports] == [('epoch 2/6 iter 40/120', None),
                                        ('epoch 2/6 iter 40/120', '61.5'),
                                        ('epoch 3/6 iter 50/120', '61.5')]
    # 20 iterations in ~0.6 s; 80 of the 120 are left
    assert 1.5 < reports[0][2] < 4


def test_config_digest_follows_the_merged_config(tmp_path):
    (tmp_path / 'base.py').write_text('model = dict(mode="cds", w=0.1)\n')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("_base_ = ['base.py']\nseed = 0\n")
    digest = common.config_digest(str(cfg), [])
    assert common.config_digest(str(cfg), []) == digest
    # an option that sets the value the config has already changes nothing
    assert common.config_digest(str(cfg), ['model.w=0.1']) == digest
    assert common.config_digest(str(cfg), ['model.w=0.3']) != digest
    (tmp_path / 'base.py').write_text('model = dict(mode="cds", w=0.3)\n')
    assert common.config_digest(str(cfg), []) == common.config_digest(
        str(cfg), ['model.w=0.3']) != digest


def test_an_earlier_result_of_another_config_is_not_taken(tmp_path):
    done = tmp_path / 'result.json'
    opts = ['model.mode=cds']
    recorded = dict(top1=1.0, cfg_options=opts, config_digest='old')
    assert common.earlier_result(recorded, str(done), opts, 'new') is None
    # made before digests were kept: its options decide
    legacy = dict(top1=2.0, cfg_options=opts)
    assert common.earlier_result(legacy, str(done), opts, 'new') is legacy
    done.write_text(json.dumps(recorded))
    with pytest.raises(SystemExit, match='another config'):
        common.earlier_result(None, str(done), opts, 'new')
    assert common.earlier_result(None, str(done), opts, 'old') == recorded
