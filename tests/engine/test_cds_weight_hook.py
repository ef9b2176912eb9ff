import logging
import math
from types import SimpleNamespace

import pytest
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import MessageHub

from cds_mm.engine.hooks import CDSWeightHook
from cds_mm.engine.hooks import cds_weight_hook as hook_module
from cds_mm.engine.hooks import cds_weight_scale


class _Recorder(nn.Module):
    """Stands in for a CDS head: records every scale it is given."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def set_weight_scale(self, scale):
        self.calls.append(scale)


def _runner(model, it=0, max_iters=100, epoch=0, max_epochs=1):
    return SimpleNamespace(
        model=model,
        iter=it,
        max_iters=max_iters,
        epoch=epoch,
        max_epochs=max_epochs,
        message_hub=MessageHub.get_instance('test_cds_hook'))


def test_zero_before_start_and_ramp():
    kw = dict(
        max_iters=100, schedule='constant', start_iter=10, warmup_iters=20)
    assert cds_weight_scale(0, **kw) == 0.0
    assert cds_weight_scale(9, **kw) == 0.0
    # the ramp starts from 0
    assert cds_weight_scale(10, **kw) == 0.0
    # ramp midpoint: (20 - 10) / 20
    assert cds_weight_scale(20, **kw) == pytest.approx(0.5)
    assert cds_weight_scale(30, **kw) == 1.0
    assert cds_weight_scale(99, **kw) == 1.0


@pytest.mark.parametrize('min_ratio', [0.0, 0.2])
def test_linear_and_cosine_decay(min_ratio):
    kw = dict(max_iters=100, start_iter=0, warmup_iters=0, min_ratio=min_ratio)
    assert cds_weight_scale(0, schedule='linear', **kw) == 1.0
    assert cds_weight_scale(
        25, schedule='linear',
        **kw) == pytest.approx(1 - 0.25 * (1 - min_ratio))
    assert cds_weight_scale(
        100, schedule='linear', **kw) == pytest.approx(min_ratio)
    assert cds_weight_scale(0, schedule='cosine', **kw) == 1.0
    assert cds_weight_scale(
        50, schedule='cosine', **kw) == pytest.approx((1 + min_ratio) / 2)
    # cos(pi / 4) at a quarter: min + (1 - min) * (1 + sqrt(2) / 2) / 2
    assert cds_weight_scale(
        25, schedule='cosine',
        **kw) == pytest.approx(min_ratio + (1 - min_ratio) *
                               (1 + math.sqrt(0.5)) / 2)
    assert cds_weight_scale(
        100, schedule='cosine', **kw) == pytest.approx(min_ratio)


def test_decay_starts_after_warmup():
    # decay over [start + warmup, max] = [20, 100]: midpoint 60
    kw = dict(
        max_iters=100,
        schedule='linear',
        start_iter=10,
        warmup_iters=10,
        min_ratio=0.0)
    assert cds_weight_scale(20, **kw) == 1.0
    assert cds_weight_scale(60, **kw) == pytest.approx(0.5)


@pytest.mark.parametrize('kwargs, match', [
    (dict(schedule='step'),
     "schedule must be one of \\('constant', 'linear', 'cosine'\\)"),
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
    runner = _runner(
        nn.Sequential(nn.Linear(2, 2), head), it=50, max_iters=100)
    hook = CDSWeightHook(schedule='cosine', min_ratio=0.2)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    # cosine midpoint (1 + 0.2) / 2
    assert head.calls == [pytest.approx(0.6)]
    assert runner.message_hub.get_scalar(
        'train/cds_weight_scale').current() == pytest.approx(0.6)
    runner.iter = 100
    hook.before_train_iter(runner, batch_idx=1)
    assert head.calls[-1] == pytest.approx(0.2)


def test_hook_uses_epochs():
    head = _Recorder()
    runner = _runner(
        nn.Sequential(head), it=5, max_iters=1000, epoch=3, max_epochs=4)
    hook = CDSWeightHook(schedule='linear', warmup_iters=10, by_epoch=True)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    # ramp 5 / 10, linear 1 - 3 / 4
    assert head.calls == [pytest.approx(0.5 * 0.25)]


class _Inner(nn.Sequential):
    """The model inside a wrapper; its name must reach the user."""


def test_hook_unwraps_model_wrapper(monkeypatch):
    head = _Recorder()
    runner = _runner(
        nn.DataParallel(_Inner(nn.Linear(2, 2), head)), it=5, max_iters=10)
    hook = CDSWeightHook(schedule='linear')
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    assert head.calls == [pytest.approx(0.5)]
    # without a head, the warning names the wrapped model, not the wrapper
    calls = []
    monkeypatch.setattr(hook_module, 'print_log',
                        lambda *a, **k: calls.append(a[0]))
    runner = _runner(nn.DataParallel(_Inner(nn.Linear(2, 2))))
    CDSWeightHook().before_train(runner)
    assert len(calls) == 1 and '(_Inner)' in calls[0], calls


def test_hook_without_cds_head_warns_and_does_nothing(monkeypatch):
    # the mode='off' baseline of a CDS config inherits the hook
    calls = []
    monkeypatch.setattr(hook_module, 'print_log', lambda *a, **k: calls.append(
        (a, k)))
    runner = _runner(nn.Sequential(nn.Linear(2, 2)))
    hook = CDSWeightHook(warmup_iters=10)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    assert len(calls) == 1 and 'CDSWeightHook' in calls[0][0][0]
    assert 'no CDS head' in calls[0][0][0] and calls[0][1][
        'level'] == logging.WARNING


def test_registered():
    from mmengine.registry import HOOKS
    hook = HOOKS.build(
        dict(type='CDSWeightHook', schedule='linear', start_iter=3))
    assert isinstance(hook, CDSWeightHook) and hook.start_iter == 3


class _ScaleSpy(Hook):
    """Records the weight scale of both CDS heads before every iteration,
    after CDSWeightHook (priority LOW, below its NORMAL)."""
    priority = 'LOW'

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model
        self.seen.append(
            (model.cds_head.weight_scale, model.instance_head.weight_scale))


def test_shipped_demo_detector_warms_up_cds_in_a_runner(tmp_path):
    """The demo detection config's CDSWeightHook, in a real Runner: both heads
    get the warm-up scale every iteration, which is logged, and the CDS losses
    of the first iteration are exactly 0."""
    from cds_test_utils import DEMO_DET_CFG, det_data_cfg, scalars, tiny_cfg
    from mmengine.config import Config
    from mmengine.runner import Runner

    import cds_mm.compat
    from cds_mm.datasets import make_shapes_coco
    cds_mm.compat.apply_all()  # as tools/train.py does (numpy 2 colour jitter)
    (shipped, ) = [
        h for h in Config.fromfile(DEMO_DET_CFG).custom_hooks
        if h['type'] == 'CDSWeightHook'
    ]
    warmup = shipped['warmup_iters']
    assert warmup > 3
    make_shapes_coco(
        str(tmp_path / 'shapes'), num_train=8, num_val=2, img_size=64)
    cfg_file = tmp_path / 'det.py'
    cfg_file.write_text(
        tiny_cfg(DEMO_DET_CFG, iters=3) +
        det_data_cfg(str(tmp_path / 'shapes') + '/', batch=2))
    cfg = Config.fromfile(str(cfg_file))
    cfg.update(
        work_dir=str(tmp_path / 'work'),
        experiment_name='cds_weight_runner',
        val_cfg=None,
        val_dataloader=None,
        val_evaluator=None)
    # mmengine reuses a visualizer of the same name (and its folder) in one
    # process
    cfg.visualizer.name = f'cds_weight_runner_{id(cfg)}'
    runner = Runner.from_cfg(cfg)
    assert sum(isinstance(h, CDSWeightHook) for h in runner.hooks) == 1
    spy = _ScaleSpy()
    runner.register_hook(spy)
    runner.train()
    want = [0.0, 1 / warmup, 2 / warmup]
    assert [a for a, _ in spy.seen] == pytest.approx(want)
    assert [b for _, b in spy.seen] == pytest.approx(want)
    steps = scalars(cfg.work_dir)
    assert [steps[s]['cds_weight_scale']
            for s in (1, 2, 3)] == pytest.approx(want)
    cds_keys = [k for k in steps[1] if k.startswith('loss_cds')]
    assert len(cds_keys) == 5 and all(steps[1][k] == 0.0
                                      for k in cds_keys), steps[1]
    assert steps[1]['loss_rpn_cls'] > 0
