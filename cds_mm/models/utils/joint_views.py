"""Run layers over several views as one batch without concatenating inputs.

A projector sees both views of a batch at once, so its BatchNorm statistics
are those of all views together (as in the authors' code). Concatenating the
tapped features first copies the largest tensors of the head. Convolutions,
activations and pooling act on each sample alone, so the views only need to
meet at the first batch-coupled layer (a norm), by which point the SepConv
stack's stride-2 convolution has cut them to a quarter.
"""
from typing import Iterable, List, Sequence, Union

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

Views = Union[Tensor, List[Tensor]]


def forward_views(layers: Iterable[nn.Module],
                  views: Views,
                  channels_last: bool = False) -> Views:
    """Apply ``layers`` in turn to views that share batch statistics.

    The views stay separate through per-sample layers and are concatenated
    (dim 0) at the first ``_BatchNorm``; from there on they are one tensor.
    When their shapes still differ there (e.g. view 2 at a lower
    resolution), every norm gets the statistics of all views' values
    (:func:`joint_batch_norm`) and the views stay separate. The result
    equals ``nn.Sequential(*layers)(torch.cat(views))`` for views of one
    shape, up to float rounding.

    Args:
        layers (Iterable[nn.Module]): Layers to apply, in order.
        views (Tensor | list[Tensor]): One tensor (already joined) or one per
            view.
        channels_last (bool): Join 4-D views in NHWC on CPU (see
            :func:`cat_views`), for layers that run faster so. Defaults to
            False.

    Returns:
        Tensor | list[Tensor]: One tensor once the views were joined,
        otherwise one per view.

    Shapes:
        views: list of (N_v, C, ...) with equal C; or (sum N_v, C, ...).
        return: (sum N_v, C', ...), or a list of (N_v, C', ...).
    """
    x = views
    for layer in layers:
        if isinstance(x, Tensor):
            x = layer(x)
        elif not isinstance(layer, _BatchNorm):
            x = [layer(v) for v in x]
        elif all(v.shape[1:] == x[0].shape[1:] for v in x):
            x = layer(cat_views(x, channels_last))
        else:
            x = joint_batch_norm(layer, x)
    return x


def cat_views(views: Sequence[Tensor], channels_last: bool = False) -> Tensor:
    """Concatenate views on dim 0, optionally channels-last.

    mkldnn runs the SepConv stacks' depthwise/pointwise convolutions and
    norms about 1.5x faster in NHWC on CPU (fwd + bwd of the 4 heads of the
    demo config); on CUDA, where this was not measured, and for other
    tensors the layout is left as it is.

    Shapes:
        views: list of (N_v, ...) of one trailing shape.
        return: (sum N_v, ...).
    """
    x = views[0] if len(views) == 1 else torch.cat(list(views))
    if channels_last and x.dim() == 4 and x.device.type == 'cpu':
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def joint_batch_norm(norm: _BatchNorm,
                     views: Sequence[Tensor]) -> List[Tensor]:
    """``norm`` over the values of all views at once, for views whose
    spatial sizes differ.

    Each view's channels are flattened into one (1, C, M, 1..) row so the norm
    (BatchNorm, SyncBN) sees every value of every view, exactly as it would
    see a concatenation; its running statistics update once.

    Shapes:
        views: list of (N_v, C, *S_v).
        return: list of (N_v, C, *S_v).
    """
    c = views[0].shape[1]
    flat = [v.transpose(0, 1).reshape(c, -1) for v in views]
    sizes = [f.shape[1] for f in flat]
    # (1, C, M, 1, ...): the views' own rank, which the norm checks
    joint = torch.cat(
        flat, dim=1).reshape(1, c, -1, *[1] * (views[0].dim() - 3))
    joint = norm(joint).reshape(c, -1)
    # contiguous: split() views may not take the in-place ReLU that follows
    return [
        f.reshape(c, v.shape[0], *v.shape[2:]).transpose(0, 1).contiguous()
        for f, v in zip(joint.split(sizes, dim=1), views)
    ]
