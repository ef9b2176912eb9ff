"""mmdet's MultiBranchDataPreprocessor with per-branch batch augments."""
from typing import Dict, Optional, Union

import torch.nn as nn
from mmdet.models.data_preprocessors import MultiBranchDataPreprocessor
from mmdet.registry import MODELS
from mmengine.model import BaseDataPreprocessor


@MODELS.register_module()
class BranchBatchAugmentsDataPreprocessor(MultiBranchDataPreprocessor):
    """``MultiBranchDataPreprocessor`` that colour-augments chosen branches.

    In training, each branch named in ``branch_batch_augments`` (for
    :class:`CDSDetector`, the contrastive branch ``'cds'``) goes through its
    batch augment (a :class:`BatchPhotometric`) on the model's device, per
    image and before padding and normalisation, and then through the
    detector's own preprocessor like every branch. The branch's pipeline then
    keeps only what must stay per sample (geometry, which the boxes follow).
    Validation and test batches are untouched.

    Args:
        data_preprocessor (dict): The detector's own preprocessor config.
        branch_batch_augments (dict, optional): Branch name -> batch augment
            config (or module), e.g. ``dict(cds=contrast_colour_batch)``.
            Defaults to None (plain ``MultiBranchDataPreprocessor``).

    Shapes:
        data['inputs'][branch] (training): list of N (3, H_i, W_i) tensors,
            ``None`` for samples without that branch.
        return: as ``MultiBranchDataPreprocessor``.
    """

    def __init__(
        self,
        data_preprocessor: dict,
        branch_batch_augments: Optional[Dict[str, Union[dict,
                                                        nn.Module]]] = None):
        super().__init__(data_preprocessor=data_preprocessor)
        augments = {}
        for branch, cfg in (branch_batch_augments or {}).items():
            if isinstance(cfg, dict):
                cfg = MODELS.build(cfg)
            if not isinstance(cfg, nn.Module):
                raise ValueError(f'branch_batch_augments.{branch} must be a '
                                 f'config dict or a module, got {cfg!r}')
            augments[branch] = cfg
        self.branch_batch_augments = nn.ModuleDict(augments)

    def forward(self, data: dict, training: bool = False) -> dict:
        if training and len(self.branch_batch_augments):
            inputs = data.get('inputs')
            missing = set(self.branch_batch_augments) - set(
                inputs if isinstance(inputs, dict) else ())
            if missing:
                raise ValueError(
                    f'branch_batch_augments names branches {sorted(missing)} '
                    'that the batch lacks: the train pipeline must end with '
                    'MultiBranch(branch_field=[...]) holding them')
            inputs = dict(inputs)
            for branch, augment in self.branch_batch_augments.items():
                inputs[branch] = self._augment(augment, inputs[branch])
            data = dict(data, inputs=inputs)
        return super().forward(data, training)

    def _augment(self, augment: nn.Module, images: list) -> list:
        """Augment the present images of a branch; ``None`` stays in place."""
        rows = [i for i, img in enumerate(images) if img is not None]
        if not rows:
            return images
        cast = self.data_preprocessor.cast_data([images[i] for i in rows])
        out = list(images)
        for i, img in zip(rows, augment(cast)):
            out[i] = img
        return out

    # MultiBranchDataPreprocessor's to()/cuda()/cpu() move and return the
    # inner preprocessor only; move both and return this one.
    def to(self, *args, **kwargs) -> nn.Module:
        self.data_preprocessor.to(*args, **kwargs)
        return BaseDataPreprocessor.to(self, *args, **kwargs)

    def cuda(self, *args, **kwargs) -> nn.Module:
        self.data_preprocessor.cuda(*args, **kwargs)
        return BaseDataPreprocessor.cuda(self, *args, **kwargs)

    def cpu(self, *args, **kwargs) -> nn.Module:
        self.data_preprocessor.cpu(*args, **kwargs)
        return BaseDataPreprocessor.cpu(self, *args, **kwargs)
