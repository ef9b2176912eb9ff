import math
from types import SimpleNamespace

import pytest
import torch.nn as nn
from mmengine.logging import MessageHub

from cds_mm.engine.hooks import CDSWeightHook, cds_weight_scale


class _Recorder(nn.Module):
    """Stands in for a CDS head: records every scale it is given."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def set_weight_scale(self, scale):
        self.calls.append(scale)


def _runner(model, it=0, max_iters=100, epoch=0, max_epochs=1):
    return SimpleNamespace(model=model, iter=it, max_iters=max_iters, epoch=epoch,
                           max_epochs=max_epochs,
                           message_hub=MessageHub.get_instance('test_cds_hook'))


def test_zero_before_start_and_ramp():
    kw = dict(max_iters=100, schedule='constant', start_iter=10, warmup_iters=20)
    assert cds_weight_scale(0, **kw) == 0.0
    assert cds_weight_scale(9, **kw) == 0.0
    assert cds_weight_scale(10, **kw) == 0.0                # the ramp starts from 0
    assert cds_weight_scale(20, **kw) == pytest.approx(0.5)  # ramp midpoint: (20 - 10) / 20
    assert cds_weight_scale(30, **kw) == 1.0
    assert cds_weight_scale(99, **kw) == 1.0


@pytest.mark.parametrize('min_ratio', [0.0, 0.2])
def test_linear_and_cosine_decay(min_ratio):
    kw = dict(max_iters=100, start_iter=0, warmup_iters=0, min_ratio=min_ratio)
    assert cds_weight_scale(0, schedule='linear', **kw) == 1.0
    assert cds_weight_scale(25, schedule='linear', **kw) == pytest.approx(
        1 - 0.25 * (1 - min_ratio))
    assert cds_weight_scale(100, schedule='linear', **kw) == pytest.approx(min_ratio)
    assert cds_weight_scale(0, schedule='cosine', **kw) == 1.0
    assert cds_weight_scale(50, schedule='cosine', **kw) == pytest.approx((1 + min_ratio) / 2)
    # cos(pi / 4) at a quarter: min + (1 - min) * (1 + sqrt(2) / 2) / 2
    assert cds_weight_scale(25, schedule='cosine', **kw) == pytest.approx(
        min_ratio + (1 - min_ratio) * (1 + math.sqrt(0.5)) / 2)
    assert cds_weight_scale(100, schedule='cosine', **kw) == pytest.approx(min_ratio)


def test_decay_starts_after_warmup():
    # decay over [start + warmup, max] = [20, 100]: midpoint 60
    kw = dict(max_iters=100, schedule='linear', start_iter=10, warmup_iters=10, min_ratio=0.0)
    assert cds_weight_scale(20, **kw) == 1.0
    assert cds_weight_scale(60, **kw) == pytest.approx(0.5)


@pytest.mark.parametrize('kwargs, match', [
    (dict(schedule='step'), "schedule must be one of \\('constant', 'linear', 'cosine'\\)"),
    (dict(start_iter=-1), 'start_iter'),
    (dict(warmup_iters=-5), 'warmup_iters'),
    (dict(min_ratio=1.5), 'min_ratio'),
    (dict(min_ratio=-0.1), 'min_ratio'),
])
def test_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CDSWeightHook(**kwargs)
    with pytest.raises(ValueError, match=match):
        cds_weight_scale(0, 10, **{'schedule': 'constant', **kwargs})


def test_hook_sets_and_logs_scale():
    head = _Recorder()
    runner = _runner(nn.Sequential(nn.Linear(2, 2), head), it=50, max_iters=100)
    hook = CDSWeightHook(schedule='cosine', min_ratio=0.2)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    assert head.calls == [pytest.approx(0.6)]               # cosine midpoint (1 + 0.2) / 2
    assert runner.message_hub.get_scalar('train/cds_weight_scale').current() == pytest.approx(0.6)
    runner.iter = 100
    hook.before_train_iter(runner, batch_idx=1)
    assert head.calls[-1] == pytest.approx(0.2)


def test_hook_unwraps_model_wrapper_and_uses_epochs():
    head = _Recorder()
    runner = _runner(nn.DataParallel(nn.Sequential(head)), it=5, max_iters=1000, epoch=3,
                     max_epochs=4)
    hook = CDSWeightHook(schedule='linear', warmup_iters=10, by_epoch=True)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    assert head.calls == [pytest.approx(0.5 * 0.25)]       # ramp 5 / 10, linear 1 - 3 / 4


def test_hook_without_cds_head_raises():
    runner = _runner(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(RuntimeError, match='CDSWeightHook.*no CDS head'):
        CDSWeightHook().before_train(runner)


def test_registered():
    from mmengine.registry import HOOKS
    hook = HOOKS.build(dict(type='CDSWeightHook', schedule='linear', start_iter=3))
    assert isinstance(hook, CDSWeightHook) and hook.start_iter == 3
