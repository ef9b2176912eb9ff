"""Normalise a batch of one or several views, however it was collated."""
from typing import List, Union

import torch
from mmengine.registry import MODELS
from mmpretrain.models.utils import SelfSupDataPreprocessor
from torch import Tensor


@MODELS.register_module()
class MultiViewDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor`` for either collate function.

    ``MultiView`` + ``PackInputs`` give every sample a list of views. With
    ``collate_fn=dict(type='default_collate')`` (mmpretrain's self-supervised
    configs) the batch arrives as one stacked tensor per view, which
    ``SelfSupDataPreprocessor`` expects; with mmengine's default
    ``pseudo_collate`` it arrives as one list of unstacked samples per view,
    which it cannot read. This class stacks the latter first, so CDS configs work with
    either, and single-view (val/test) batches of both kinds too.

    Shapes:
        data['inputs']: list of V tensors (N, C, H, W) (default_collate), or
            list of V lists of N tensors (C, H, W) (pseudo_collate), or
            list of N tensors (C, H, W), or one tensor (N, C, H, W).
        return['inputs']: list of V float tensors (N, C, H, W), or one
            (N, C, H, W) tensor for a single view.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        return super().forward(dict(data, inputs=_stack(data['inputs'])), training)


def _stack(inputs: Union[Tensor, list, tuple]) -> Union[Tensor, List[Tensor]]:
    if isinstance(inputs, Tensor) or not inputs:
        return inputs
    first = inputs[0]
    if isinstance(first, (list, tuple)):  # pseudo_collate transposed: views first
        return [torch.stack(list(view)) for view in inputs]
    if isinstance(first, Tensor) and first.dim() == 3:
        return torch.stack(list(inputs))
    return list(inputs)
