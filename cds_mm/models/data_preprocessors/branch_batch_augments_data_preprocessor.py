"""The deprecated name of :class:`MultiViewDetDataPreprocessor`."""
import logging
from typing import Dict, Optional, Union

import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.logging import print_log

from .multi_view_det_data_preprocessor import MultiViewDetDataPreprocessor


@MODELS.register_module()
class BranchBatchAugmentsDataPreprocessor(MultiViewDetDataPreprocessor):
    """Deprecated: use ``MultiViewDetDataPreprocessor(view2_batch_augments=
    ...)``; kept so that existing configs build, with a warning.

    ``branch_batch_augments=dict(cds=augment)`` is
    ``view2_batch_augments=augment, view2_branch='cds'``; it names one
    branch at most (the one that holds view 2).

    Args:
        data_preprocessor (dict): The detector's own preprocessor config.
        branch_batch_augments (dict, optional): Branch name -> batch augment
            config (or module), e.g. ``dict(cds=contrast_colour_batch)``.
            Defaults to None (plain ``MultiBranchDataPreprocessor``).
    """

    _augment_key = 'branch_batch_augments.{branch}'
    _branch_key = 'branch_batch_augments.{branch}'

    def __init__(
        self,
        data_preprocessor: dict,
        branch_batch_augments: Optional[Dict[str, Union[dict,
                                                        nn.Module]]] = None):
        augments = dict(branch_batch_augments or {})
        if len(augments) > 1:
            raise ValueError(
                'branch_batch_augments (deprecated) names one branch, the '
                f'one that holds view 2, got {sorted(augments)}')
        branch, augment = next(iter(augments.items()), ('cds', None))
        print_log(
            'BranchBatchAugmentsDataPreprocessor is deprecated; use '
            'MultiViewDetDataPreprocessor(view2_batch_augments=..., '
            f'view2_branch={branch!r}) in place of '
            f'branch_batch_augments=dict({branch}=...)',
            logger='current',
            level=logging.WARNING)
        super().__init__(
            data_preprocessor=data_preprocessor,
            view2_batch_augments=augment,
            view2_branch=branch)
