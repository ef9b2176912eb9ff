"""Warn when a config's top-level ``data_root`` is not what its datasets
read."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...datasets.data_root import warn_data_root_mismatch


@HOOKS.register_module()
class DataRootCheckHook(Hook):
    """Log a warning naming each dataloader dataset whose ``data_root`` is not
    the config's top-level ``data_root``.

    mmengine substitutes the ``data_root`` variable when it parses a config
    file, so a child config that changes only ``data_root`` (or upstream
    tools' ``--cfg-options data_root=DIR``) trains on the base config's data
    without a word. Our ``tools/train.py`` / ``test.py`` check that before
    building anything; this hook makes upstream tools (mmdet's and
    mmpretrain's ``tools/train.py`` / ``test.py``, ``mim train``) check it
    too, in ``before_run``, on the config the runner was built from. It only
    warns: two roots can be on purpose. A ``(key, value)`` pair is warned
    about once per process. The shipped configs get the hook from
    ``configs/_base_/cds/check_finite_loss.py``.

    Example:
        >>> custom_hooks = [dict(type='DataRootCheckHook')]
    """
    priority = 'VERY_LOW'

    def before_run(self, runner) -> None:
        cfg = getattr(runner, 'cfg', None)
        if cfg is not None:
            warn_data_root_mismatch(cfg, logger=runner.logger)
