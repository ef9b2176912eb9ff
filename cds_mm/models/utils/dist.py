"""Cross-rank gathers for contrastive losses: features with gradient, labels
without.

A contrastive loss that wants negatives from every rank gathers the local
projections with :func:`gather_with_grad`. Its backward sums the gradient that
each rank's loss sends to a gathered block and hands it back to the rank that
owns the block, so with DDP averaging gradients over ranks a multi-rank step
equals one process holding the concatenated batch.

Ranks may hold different numbers of rows, none included: :func:`gather_sizes`
all-gathers the row counts first, every rank pads its rows to the largest count
for the ``all_gather`` and the padding is dropped afterwards. Every rank must
call every function here, with or without rows, in the same
order: they are collectives, and a rank that skips one leaves the others
    waiting in it.

Outside an initialised process group, or with a world size of 1, every function
returns its input.
"""
from typing import List, Optional, Sequence

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_rank, get_world_size
from torch import Tensor

__all__ = [
    'get_rank', 'get_world_size', 'gather_shapes', 'gather_sizes',
    'gather_with_grad', 'gather_labels', 'all_reduce_max'
]


def gather_shapes(x: Tensor, group: Optional[object] = None) -> List[tuple]:
    """Gather the shape of ``x`` from every rank; all but dim 0 must agree.

    All ranks must call it (it is a collective). Every rank sees the same
    shapes, so every rank raises together.

    Args:
        x (Tensor): The local tensor, at least 1-D.
        group (ProcessGroup, optional): The process group. Defaults to None
            (the default group).

    Returns:
        list[tuple]: The shape held by each rank, in rank order.

    Raises:
        ValueError: If ``x`` is 0-D or the shapes differ across ranks in a
            dimension other than 0.

    Shapes:
        x: (N_r, ...) with any N_r >= 0 and the same trailing dims on every
            rank r.
    """
    if x.dim() == 0:
        raise ValueError('cannot gather a 0-D tensor; expected shape (N, ...)')
    world_size = get_world_size(group)
    if world_size == 1:
        return [tuple(x.shape)]
    shape = torch.tensor(x.shape, dtype=torch.long, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size)]
    torch_dist.all_gather(shapes, shape, group=group)
    shapes = [tuple(s.tolist()) for s in shapes]
    if len({s[1:] for s in shapes}) > 1:
        raise ValueError(
            'all ranks must hold rows of the same shape to gather, but the '
            'trailing dims differ across ranks: shapes in rank order are '
            f'{shapes}')
    return shapes


def gather_sizes(x: Tensor, group: Optional[object] = None) -> List[int]:
    """Rows (dim 0) of ``x`` on every rank, in rank order; see
    :func:`gather_shapes`."""
    return [s[0] for s in gather_shapes(x, group)]


def _gather_padded(x: Tensor, sizes: Sequence[int],
                   group: Optional[object]) -> Tensor:
    """all_gather of ``x`` padded to ``max(sizes)`` rows, padding dropped."""
    longest = max(sizes)
    padded = x.new_zeros((longest, ) + tuple(x.shape[1:]))
    padded[:x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    torch_dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient and keeps the
    own rows.

    Same gradient as ``torch.distributed.nn.functional.all_gather``, which this
    torch marks deprecated and which on gloo goes through ``all_to_all``; that
    left worker processes aborting at exit ("terminate called without an active
    exception") in about 1 run in 8 here. One ``all_reduce`` works on every
    backend, and the gathered projections are small.
    """

    @staticmethod
    def forward(ctx, x: Tensor, sizes: Sequence[int],
                group: Optional[object]) -> Tensor:
        rank = torch_dist.get_rank(group)
        ctx.group = group
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather_padded(x, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()  # all_reduce works in place
        torch_dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.start:ctx.stop], None, None


def gather_with_grad(x: Tensor,
                     group: Optional[object] = None,
                     sizes: Optional[Sequence[int]] = None) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping the autograd
    graph.

    In backward each rank receives the sum, over all ranks, of the gradient
    flowing into its own rows (as with
    ``torch.distributed.nn.functional.all_gather``). Every rank must run the
    backward, as for any collective: a rank without rows still has to use the
    result.

    Args:
        x (Tensor): The local tensor.
        group (ProcessGroup, optional): The process group. Defaults to None
            (the default group).
        sizes (list[int], optional): Rows of every rank from
            :func:`gather_sizes`, to save that collective when the caller has
            them. Defaults to None (gathered here).

    Returns:
        Tensor: The gathered tensor in rank order; ``x`` itself when not
            distributed or when
        no rank holds a row.

    Raises:
        ValueError: If the trailing dims differ across ranks.

    Shapes:
        x: (N_r, ...) on rank r, N_r >= 0.
        return: (sum_r N_r, ...); rank r owns rows [sum_{q<r} N_q, sum_{q<=r}
            N_q).
    """
    if sizes is None:
        sizes = gather_sizes(x, group)
    if len(sizes) == 1 or max(sizes) == 0:
        return x
    return _AllGatherWithGrad.apply(x.contiguous(), list(sizes), group)


@torch.no_grad()
def gather_labels(labels: Tensor,
                  group: Optional[object] = None,
                  sizes: Optional[Sequence[int]] = None) -> Tensor:
    """Concatenate ``labels`` from every rank along dim 0, without gradient.

    Args:
        labels (Tensor): The local labels (any dtype the backend supports, the
            same on every rank).
        group (ProcessGroup, optional): The process group. Defaults to None
            (the default group).
        sizes (list[int], optional): Rows of every rank from
            :func:`gather_sizes`. Defaults to None (gathered here).

    Returns:
        Tensor: The gathered labels in rank order; ``labels`` itself when not
            distributed.

    Raises:
        ValueError: If the trailing dims differ across ranks.

    Shapes:
        labels: (N_r,) on rank r, N_r >= 0.
        return: (sum_r N_r,).
    """
    if sizes is None:
        sizes = gather_sizes(labels, group)
    if len(sizes) == 1 or max(sizes) == 0:
        return labels
    return _gather_padded(labels.contiguous(), sizes, group)


@torch.no_grad()
def all_reduce_max(x: Tensor, group: Optional[object] = None) -> Tensor:
    """Element-wise maximum of ``x`` over every rank (a copy; ``x`` itself when
    not distributed).

    Shapes:
        x: any shape, the same on every rank.
        return: the shape of ``x``.
    """
    if get_world_size(group) == 1:
        return x
    out = x.clone()
    torch_dist.all_reduce(out, op=torch_dist.ReduceOp.MAX, group=group)
    return out
