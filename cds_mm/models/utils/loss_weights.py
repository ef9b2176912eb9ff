"""Per-tap loss weights, checked once for every head."""
from typing import List, Sequence, Union

from .weight_checks import check_weights


def per_tap_weights(loss_weight: Union[float, Sequence[float]],
                    num_taps: int,
                    key: str,
                    name: str = 'loss_weight') -> List[float]:
    """One float weight per tap from a scalar or a list.

    Args:
        loss_weight (float | list[float]): One weight for all taps, or one
            per tap.
        num_taps (int): Number of taps of the head.
        key (str): Config key named in the error, e.g. ``'cds_head'``.
        name (str): The setting's name under ``key``. Defaults to
            ``'loss_weight'``.

    Returns:
        list[float]: ``num_taps`` weights.

    Raises:
        ValueError: A weight is negative, not finite or not a number, or the
            list has another length than ``num_taps``.
    """
    weights = check_weights(loss_weight, f'{key}.{name}')
    if not isinstance(loss_weight, (list, tuple)):
        return weights * num_taps
    if len(weights) != num_taps:
        raise ValueError(f'{key}.{name} has {len(weights)} entries for '
                         f'{num_taps} taps; give one float or one per tap')
    return weights
