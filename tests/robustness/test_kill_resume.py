"""SIGKILL mid-run, ``--resume``, and get the uninterrupted run back exactly.

The tiny CDS classifier trains 12 iterations (IterBasedTrainLoop, a checkpoint
every 4, the LR dropping after iteration 10, 2 sampler epochs of 6 iterations)
under ``randomness=dict(seed=0, deterministic=True)``. One run is SIGKILLed as
soon as ``iter_8.pth`` exists, then resumed with ``--resume``. mmengine replays
the skipped iterations through the dataloader (sampler order and the pipeline's
numpy draws come back), so from iteration 9 on the resumed run logs the same
losses and ends with the same weights as an uninterrupted run, with EMAHook's
averaged weights included.
"""
import math
import re
import signal
import time

import pytest
import torch
from cds_test_utils import (DEMO_CLS_CFG, finish, popen_train,
                            scalars_all_runs, write_fashion_idx)

import cds_mm  # noqa: F401  (registries; conftest applies cds_mm.compat)

TINY = """
_base_ = {base!r}
ds = dict(data_root={root!r}, val_size=8)
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(max_samples=24, **ds))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=ds)
test_dataloader = dict(num_workers=0, dataset=ds)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=12, val_interval=1000)
param_scheduler = dict(_delete_=True, type='MultiStepLR', by_epoch=False, milestones=[10],
                       gamma=0.1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(
    _delete_=True, type='CheckpointHook', by_epoch=False, interval=4))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0, deterministic=True)
custom_hooks = {hooks!r}
"""  # noqa: E501


def train(cfg, work_dir, *args):
    return popen_train(cfg, work_dir, '--no-validate', *args)


def kill_after(proc, path, timeout=400):
    """SIGKILL ``proc`` as soon as ``path`` exists; return the iteration it had
    logged."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.monotonic() < deadline, f'{path.name} never appeared'
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL
    return out


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize('ema', [False, True], ids=['plain', 'ema'])
def test_kill_and_resume_matches_uninterrupted(tmp_path, ema):
    write_fashion_idx(str(tmp_path / 'fmnist'), n=32)
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(
        TINY.format(
            base=DEMO_CLS_CFG,
            root=str(tmp_path / 'fmnist'),
            hooks=[dict(type='EMAHook')] if ema else []))
    ref_dir, dir_ = tmp_path / 'ref', tmp_path / 'killed'
    # the uninterrupted run, alongside the killed one
    ref = train(cfg, ref_dir)
    kill_after(train(cfg, dir_), dir_ / 'iter_8.pth')
    assert not (dir_ / 'iter_12.pth').exists()  # killed before the end
    finish(ref)

    log = finish(train(cfg, dir_, '--resume'))
    # the kill may land before CheckpointHook updates last_checkpoint: then
    # iter_4 is resumed
    resumed = int(re.search(r'resumed epoch: \d+, iter: (\d+)', log).group(1))
    assert resumed in (4, 8), log[-3000:]
    assert f'Advance dataloader {resumed} steps' in log
    assert f'Iter(train) [{resumed + 1:>2}/12]' in log
    assert 'Iter(train) [ 1/12]' not in log

    want, got = scalars_all_runs(str(ref_dir)), scalars_all_runs(str(dir_))
    assert sorted(want) == sorted(got) == list(range(1, 13))
    assert all(
        math.isfinite(v) for entry in want.values() for v in entry.values())
    # after 10 steps
    assert [want[i]['lr'] for i in (10, 11)] == pytest.approx([0.1, 0.01])
    for step in range(resumed + 1, 13):  # every loss, lr, exactly
        assert got[step] == want[step], step

    a = torch.load(ref_dir / 'iter_12.pth', map_location='cpu')
    b = torch.load(dir_ / 'iter_12.pth', map_location='cpu')
    assert a['meta']['iter'] == b['meta']['iter'] == 12
    # with EMAHook, 'state_dict' holds the averaged weights and
    # 'ema_state_dict' the trained ones
    assert ('ema_state_dict' in a) == ema
    assert_same_state(a['state_dict'], b['state_dict'])
    if ema:
        assert_same_state(a['ema_state_dict'], b['ema_state_dict'])
        assert int(b['ema_state_dict']['steps']) == 12
    assert_same_state(a['optimizer']['state'], b['optimizer']['state'])
