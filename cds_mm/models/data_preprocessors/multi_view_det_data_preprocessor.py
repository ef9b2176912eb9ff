"""mmdet's MultiBranchDataPreprocessor with view 2's batch colour augment."""
from typing import Optional, Union

import torch.nn as nn
from mmdet.models.data_preprocessors import MultiBranchDataPreprocessor
from mmdet.registry import MODELS
from mmengine.model import BaseDataPreprocessor


@MODELS.register_module()
class MultiViewDetDataPreprocessor(MultiBranchDataPreprocessor):
    """``MultiBranchDataPreprocessor`` that colour-augments view 2.

    The detection counterpart of :class:`MultiViewClsDataPreprocessor`. In
    training, the branch ``view2_branch`` (for :class:`CDSDetector`, the
    contrastive branch ``'cds'``) goes through ``view2_batch_augments`` (a
    :class:`BatchPhotometric`) on the model's device, per image and before
    padding and normalisation, and then through the detector's own
    preprocessor like every branch. The branch's pipeline then keeps only
    what must stay per sample (geometry, which the boxes follow). Validation
    and test batches are untouched.

    Args:
        data_preprocessor (dict): The detector's own preprocessor config.
        view2_batch_augments (dict | nn.Module, optional): A batch colour
            augment for view 2, e.g. ``contrast_colour_batch``
            (``configs/_base_/cds/contrast_colour_batch.py``). Defaults to
            None (plain ``MultiBranchDataPreprocessor``).
        view2_branch (str): The ``MultiBranch`` branch that holds view 2.
            Defaults to ``'cds'``, as :class:`CDSDetector` names it.

    Shapes:
        data['inputs'][view2_branch] (training): list of N (3, H_i, W_i)
            tensors, ``None`` for samples without that branch.
        return: as ``MultiBranchDataPreprocessor``.
    """

    # the config keys that bad input is reported under (the deprecated
    # BranchBatchAugmentsDataPreprocessor names its own)
    _augment_key = 'view2_batch_augments'
    _branch_key = 'view2_branch={branch!r}'

    def __init__(self,
                 data_preprocessor: dict,
                 view2_batch_augments: Optional[Union[dict, nn.Module]] = None,
                 view2_branch: str = 'cds'):
        super().__init__(data_preprocessor=data_preprocessor)
        if not isinstance(view2_branch, str):
            raise ValueError('view2_branch must be a branch name (str), got '
                             f'{view2_branch!r}')
        if isinstance(view2_batch_augments, dict):
            view2_batch_augments = MODELS.build(view2_batch_augments)
        if not (view2_batch_augments is None
                or isinstance(view2_batch_augments, nn.Module)):
            key = self._augment_key.format(branch=view2_branch)
            raise ValueError(f'{key} must be a config dict or a module, got '
                             f'{view2_batch_augments!r}')
        self.view2_batch_augments = view2_batch_augments
        self.view2_branch = view2_branch

    def forward(self, data: dict, training: bool = False) -> dict:
        if training and self.view2_batch_augments is not None:
            inputs = data.get('inputs')
            branch = self.view2_branch
            if not isinstance(inputs, dict) or branch not in inputs:
                key = self._branch_key.format(branch=branch)
                has = sorted(inputs) if isinstance(inputs, dict) else []
                raise ValueError(
                    f'{key} names a branch that the batch lacks (it has '
                    f'{has}): the train pipeline must end with '
                    'MultiBranch(branch_field=[...]) holding it')
            inputs = dict(inputs)
            inputs[branch] = self._augment(inputs[branch])
            data = dict(data, inputs=inputs)
        return super().forward(data, training)

    def _augment(self, images: list) -> list:
        """Augment the present images of view 2; ``None`` stays in place."""
        rows = [i for i, img in enumerate(images) if img is not None]
        if not rows:
            return images
        cast = self.data_preprocessor.cast_data([images[i] for i in rows])
        out = list(images)
        for i, img in zip(rows, self.view2_batch_augments(cast)):
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
