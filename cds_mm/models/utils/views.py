"""The views of a wrapper's batch: view 1 (the task's), view 2 (CDS's)."""
from typing import Optional, Sequence, Tuple, Union

from torch import Tensor

Views = Union[Tensor, Sequence[Tensor]]


def split_views(inputs: Views,
                need_second: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """View 1 and, when there is one, view 2 of a batch.

    Args:
        inputs (Tensor | list[Tensor]): One batch (a single view), or one
            batch per view, as :class:`MultiViewClsDataPreprocessor` gives.
        need_second (bool): Raise if ``inputs`` holds no second view.

    Returns:
        tuple: ``(view1, view2)``; ``view2`` is None for a single view.

    Raises:
        ValueError: if ``need_second`` and ``inputs`` is not two views.

    Shapes:
        inputs: (N, C, H, W), or a list of 2 tensors (N, C, H_v, W_v).
        return: (N, C, H, W) and (N, C, H_2, W_2) or None.
    """
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 2:
            return inputs[0], inputs[1]
        if len(inputs) == 1 and not need_second:
            return inputs[0], None
    elif not need_second:
        return inputs, None
    raise ValueError(
        "mode='cds' needs two views per image: wrap the train pipeline's "
        'transforms in MultiView(num_views=[1, 1], ...) (got '
        f'{type(inputs).__name__} of {len(inputs)} items)')


def take_rows(x: Union[Tensor, Sequence[Tensor]], rows: Sequence[int]):
    """Rows ``rows`` of a tensor, or of each tensor in a sequence.

    Shapes:
        x: (N, ...) or a sequence of (N, ...) tensors (tuple in, tuple out).
        return: (len(rows), ...), or a sequence of them.
    """
    rows = list(rows)
    if isinstance(x, Tensor):
        return x[rows]
    return tuple(t[rows]
                 for t in x) if isinstance(x, tuple) else [t[rows] for t in x]
