"""Schedule the weight of the CDS contrastive loss over training."""
import logging
import math
from typing import List, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

SCHEDULES = ('constant', 'linear', 'cosine')


def _check_args(schedule: str, start_iter: int, warmup_iters: int,
                min_ratio: float) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(
            f'schedule must be one of {SCHEDULES}, got {schedule!r}')
    if start_iter < 0:
        raise ValueError(f'start_iter must be >= 0, got {start_iter}')
    if warmup_iters < 0:
        raise ValueError(f'warmup_iters must be >= 0, got {warmup_iters}')
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f'min_ratio must be in [0, 1], got {min_ratio}')


def cds_weight_scale(it: int,
                     max_iters: int,
                     schedule: str = 'constant',
                     start_iter: int = 0,
                     warmup_iters: int = 0,
                     min_ratio: float = 0.0) -> float:
    """Scale in [0, 1] of the CDS loss weight at iteration ``it``.

    Three phases: 0 while ``it < start_iter``; a linear ramp ``(it -
    start_iter) / warmup_iters`` from 0 to 1 over the next ``warmup_iters``;
    then a decay from 1 to ``min_ratio`` as the position ``p = (it - d) /
    (max_iters - d)``, ``d = start_iter + warmup_iters``, goes from 0 to 1
    (``p`` clipped to [0, 1], so ``min_ratio`` is reached at ``it ==
    max_iters``):

    - ``'constant'``: 1.
    - ``'linear'``: ``1 - (1 - min_ratio) * p``.
    - ``'cosine'``: ``min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2``.

    Args:
        it (int): Current iteration (or epoch), 0-based.
        max_iters (int): Total iterations (or epochs) of training.
        schedule (str): 'constant', 'linear' or 'cosine'. Defaults to
            'constant'.
        start_iter (int): The scale is 0 before it. Defaults to 0.
        warmup_iters (int): Length of the linear ramp after ``start_iter``.
            Defaults to 0.
        min_ratio (float): Scale at the end of the decay, in [0, 1]. Defaults
            to 0.0.

    Returns:
        float: The scale, in [0, 1].
    """
    _check_args(schedule, start_iter, warmup_iters, min_ratio)
    if it < start_iter:
        return 0.0
    ramp = min(1.0,
               (it - start_iter) / warmup_iters) if warmup_iters > 0 else 1.0
    decay_start = start_iter + warmup_iters
    span = max_iters - decay_start
    if span > 0:
        p = min(max((it - decay_start) / span, 0.0), 1.0)
    else:  # training ends before the decay would start
        p = 0.0 if it < decay_start else 1.0
    if schedule == 'constant':
        decay = 1.0
    elif schedule == 'linear':
        decay = 1.0 - (1.0 - min_ratio) * p
    else:
        decay = min_ratio + (1.0 - min_ratio) * (1.0 +
                                                 math.cos(math.pi * p)) / 2
    return ramp * decay


@HOOKS.register_module()
class CDSWeightHook(Hook):
    """Rescale the CDS contrastive loss weight before every training iteration.

    The scale from :func:`cds_weight_scale` is passed to
    ``set_weight_scale(scale)`` of every submodule of the (unwrapped) model
    that has one, e.g. ``CDSHead``, which multiplies its configured
    ``loss_weights`` by it, and is logged as ``train/cds_weight_scale``. The
    scale is a function of ``runner.iter`` / ``runner.epoch`` only, so resuming
    needs no saved state. ``milestones`` add a step decay on top, as FSCE's
    ``ContrastiveLossDecayHook``: the scale is multiplied by ``gamma`` at each
    milestone iteration reached. A model without such a submodule (the
    ``mode='off'`` baseline of a CDS config, which inherits the hook) gets a
    warning and is left alone.

    Args:
        schedule (str): Decay from 1 to ``min_ratio``: 'constant' (no decay),
            'linear' or 'cosine'. Defaults to 'constant'.
        start_iter (int): Iteration before which the scale is 0. Defaults to 0.
        warmup_iters (int): Iterations of the linear ramp from 0 to 1 after
            ``start_iter``. Defaults to 0.
        min_ratio (float): Final scale of 'linear' / 'cosine', in [0, 1].
            Defaults to 0.0.
        by_epoch (bool): If True the decay position is ``runner.epoch /
            runner.max_epochs`` and starts at epoch 0, while ``start_iter`` and
            ``warmup_iters`` still count iterations (the scale is the
            iteration-based ramp times the epoch-based decay). Defaults to
            False.
        milestones (Sequence[int]): Iterations (0-based, counted as
            ``start_iter``) from which the scale is multiplied by ``gamma``
            once more. Defaults to () (no step decay).
        gamma (float): Factor per milestone, in [0, 1]. Defaults to 0.5.

    Example:
        >>> custom_hooks = [dict(type='CDSWeightHook', schedule='cosine',
            warmup_iters=500)]
    """
    priority = 'NORMAL'

    def __init__(self,
                 schedule: str = 'constant',
                 start_iter: int = 0,
                 warmup_iters: int = 0,
                 min_ratio: float = 0.0,
                 by_epoch: bool = False,
                 milestones: Sequence[int] = (),
                 gamma: float = 0.5) -> None:
        _check_args(schedule, start_iter, warmup_iters, min_ratio)
        if any(not isinstance(m, int) or m < 0 for m in milestones):
            raise ValueError(
                f'milestones must be iterations >= 0, got {milestones}')
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f'gamma must be in [0, 1], got {gamma}')
        self.milestones = sorted(milestones)
        self.gamma = gamma
        self.schedule = schedule
        self.start_iter = start_iter
        self.warmup_iters = warmup_iters
        self.min_ratio = min_ratio
        self.by_epoch = by_epoch
        self._targets: Optional[List] = None

    def _find_targets(self, runner) -> List:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        targets = [
            m for m in model.modules()
            if callable(getattr(m, 'set_weight_scale', None))
        ]
        if not targets:  # e.g. the baseline (mode='off') of a CDS config
            print_log(
                f'{type(self).__name__}: the model ({type(model).__name__}) '
                'has no CDS head (no '
                'submodule has a callable `set_weight_scale`), so the hook '
                'does nothing.',
                logger='current',
                level=logging.WARNING)
        return targets

    def current_scale(self, runner) -> float:
        """The scale for the runner's current iteration (and epoch when
        ``by_epoch``).

        Args:
            runner (Runner): The runner of the training process.

        Returns:
            float: The scale, in [0, 1].
        """
        steps = self.gamma**sum(runner.iter >= m for m in self.milestones)
        if not self.by_epoch:
            return steps * cds_weight_scale(runner.iter, runner.max_iters,
                                            self.schedule, self.start_iter,
                                            self.warmup_iters, self.min_ratio)
        ramp = cds_weight_scale(runner.iter, runner.max_iters, 'constant',
                                self.start_iter, self.warmup_iters)
        return steps * ramp * cds_weight_scale(
            runner.epoch,
            runner.max_epochs,
            self.schedule,
            min_ratio=self.min_ratio)

    def before_train(self, runner) -> None:
        """Find the modules to rescale; warn once if there are none.

        Args:
            runner (Runner): The runner of the training process.
        """
        self._targets = self._find_targets(runner)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        """Set and log the scale for this iteration.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): Index of the batch in the epoch.
            data_batch (dict or tuple or list, optional): The batch. Defaults
                to None.
        """
        if self._targets is None:
            self._targets = self._find_targets(runner)
        if not self._targets:
            return
        scale = self.current_scale(runner)
        for module in self._targets:
            module.set_weight_scale(scale)
        runner.message_hub.update_scalar('train/cds_weight_scale', scale)
