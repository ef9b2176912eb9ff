"""Loss weights checked when a head is built, naming the config key."""
import math
from numbers import Real
from typing import List, Sequence, Union


def check_weight(value, key: str) -> float:
    """``float(value)`` if it is a finite number >= 0, else ``ValueError``.

    Args:
        value (float): The weight as the config gives it.
        key (str): Its config key, named in the error, e.g.
            ``'cds_head.loss_weight[2]'``.

    Returns:
        float: The weight.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f'{key} must be a number, got {value!r}')
    weight = float(value)
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f'{key} must be a finite number >= 0, got {value!r}')
    return weight


def check_weights(weights: Union[float, Sequence[float]],
                  key: str) -> List[float]:
    """Each weight of a scalar or per-tap setting checked by
    :func:`check_weight`.

    Args:
        weights (float | list[float]): One weight, or one per tap.
        key (str): The setting's config key, e.g. ``'cds_head.loss_weight'``;
            a list entry is named ``key[i]``.

    Returns:
        list[float]: The weights (one entry for a scalar).
    """
    if isinstance(weights, (list, tuple)):
        return [check_weight(w, f'{key}[{i}]') for i, w in enumerate(weights)]
    return [check_weight(weights, key)]
