"""Load a plain model's checkpoint into the wrapper around that model."""
import logging
from functools import partial

import torch.nn as nn
from mmengine.logging import print_log


def load_plain_checkpoints(wrapper: nn.Module, inner: str) -> None:
    """Let ``wrapper`` load a checkpoint of its inner model as it is.

    A state-dict pre-hook moves every key of a checkpoint that holds no
    ``<inner>.`` key (e.g. ``backbone.conv1.weight`` of a plain upstream
    detector) under ``<inner>.``, except the keys of the wrapper's other
    children (``cds_head.``, ``teacher.``, ...), and logs it once per load.
    A checkpoint of the wrapper itself loads unchanged. This works for
    ``load_state_dict``, ``mmengine.runner.load_checkpoint`` and so for
    ``load_from`` / ``--cfg-options load_from=...``.

    Args:
        wrapper (nn.Module): The wrapper, e.g. a ``CDSDetector``.
        inner (str): Attribute name of the wrapped model, e.g.
            ``'detector'``.
    """
    wrapper._register_load_state_dict_pre_hook(
        partial(_move_plain_keys, inner), with_module=True)


def _move_plain_keys(inner: str, wrapper: nn.Module, state_dict: dict,
                     prefix: str, *args) -> None:
    own = [k for k in state_dict if k.startswith(prefix)]
    if any(k.startswith(f'{prefix}{inner}.') for k in own):
        return
    others = tuple(f'{prefix}{name}.' for name in wrapper._modules
                   if name != inner)
    plain = [k for k in own if not k.startswith(others)]
    for key in plain:
        new_key = f'{prefix}{inner}.{key[len(prefix):]}'
        state_dict[new_key] = state_dict.pop(key)
    if plain:
        print_log(
            f'{type(wrapper).__name__}: the checkpoint holds a plain model '
            f'(no "{inner}." keys); its {len(plain)} keys are loaded into '
            f'"{prefix}{inner}."',
            logger='current',
            level=logging.INFO)
