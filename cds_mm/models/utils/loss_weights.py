"""Per-tap loss weights, checked once for every head."""
from typing import List, Sequence, Union


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
    """
    if isinstance(loss_weight, (int, float)):
        return [float(loss_weight)] * num_taps
    weights = [float(w) for w in loss_weight]
    if len(weights) != num_taps:
        raise ValueError(f'{key}.{name} has {len(weights)} entries for '
                         f'{num_taps} taps; give one float or one per tap')
    return weights
