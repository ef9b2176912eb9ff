"""Stop training at the first iteration whose losses are not all finite."""
import math
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Raise at the first training iteration with a NaN or infinite loss.

    After every training iteration each entry of the model's ``log_vars``
    whose name contains ``'loss'`` (the total ``'loss'`` and every term, as
    ``BaseModel.parse_losses`` sums them) is checked. A non-finite one raises
    ``FloatingPointError`` naming the key(s), their values and the iteration,
    before any later hook of that iteration runs: with the priority
    ``'VERY_HIGH'`` this hook comes before ``CheckpointHook``, so no
    checkpoint of that or a later iteration is written and the last one
    saved stays the last good one. Under torch.distributed the ranks agree
    through one all_reduce per iteration, so every rank stops together.

    Unlike mmdet's ``CheckInvalidLossHook`` (the total loss, every 50
    iterations, an ``assert`` that ``python -O`` drops, no agreement between
    ranks, mmdet scope only) it checks each term, every iteration, and is
    registered in the mmengine root ``HOOKS`` registry, so the mmdet and
    mmpretrain scopes both find it. It does not subclass that hook: importing
    it would make this hook, and so ``import cds_mm``, need mmdet, which a
    classification-only environment (mmpretrain with an mmcv that mmdet
    refuses) lacks; and none of its behaviour would be kept (the one method
    it has is the check replaced here). The shipped configs get it from
    ``configs/_base_/cds/check_finite_loss.py``.

    Example:
        >>> custom_hooks = [dict(type='CheckFiniteLossHook')]
    """
    priority = 'VERY_HIGH'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Raise ``FloatingPointError`` if a loss in ``outputs`` is not finite.

        Args:
            runner (Runner): The runner of the training process.
            batch_idx (int): Index of the batch in the epoch.
            data_batch (dict or tuple or list, optional): The batch.
                Defaults to None.
            outputs (dict, optional): The ``log_vars`` of ``train_step``:
                scalar tensors (or numbers) by name. Defaults to None.
        """
        bad = {
            key: _as_float(value)
            for key, value in (outputs or {}).items()
            if 'loss' in key and not math.isfinite(_as_float(value))
        }
        if get_world_size() > 1:  # every rank joins, finite or not
            count = torch.tensor(float(len(bad)))
            all_reduce(count)
            stop = count.item() > 0
        else:
            stop = bool(bad)
        if not stop:
            return
        where = ', '.join(f'{k}={v}' for k, v in bad.items()) or (
            'every loss is finite on this rank, but not on another one')
        last = runner.message_hub.get_info('last_ckpt')
        kept = (f'the last checkpoint written is {last}'
                if last else 'no checkpoint was written before it')
        raise FloatingPointError(
            f'Non-finite loss at iteration {runner.iter + 1} (epoch '
            f'{runner.epoch + 1}, batch {batch_idx + 1} of the epoch): '
            f'{where}. Training stopped before this iteration was saved; '
            f'{kept}. Lower the learning rate or the CDS loss weights, or '
            'add gradient clipping (optim_wrapper.clip_grad).')


def _as_float(value) -> float:
    """A logged loss (scalar tensor or number) as a float."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean())
    return float(value)
