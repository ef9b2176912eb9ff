"""A classifier's own data preprocessor, applied to each view of a batch."""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseDataPreprocessor
from mmpretrain.registry import MODELS
from torch import Tensor

from ..utils.build_scope import build_scope


@MODELS.register_module()
class MultiViewClsDataPreprocessor(BaseDataPreprocessor):
    """Hold a classifier's data preprocessor and run it on every view.

    The classification counterpart of mmdet's
    ``MultiBranchDataPreprocessor``: :class:`CDSClassifier` hands it the
    inner classifier's own preprocessor (an mmpretrain
    ``ClsDataPreprocessor``, with the recipe's mean, std, channel order,
    padding, ``to_onehot`` and the ``batch_augments`` that
    ``train_cfg.augments`` put there), so each view is what the plain recipe
    would feed the classifier:

    - view 1 (the task view) goes through it exactly as in the plain recipe,
      batch augments (Mixup, CutMix) included: the classifier's CE sees the
      mixed images and their soft labels (``gt_score``), while ``gt_label``
      keeps each row's own hard label. Each sample's metainfo
      ``batch_augmented`` says whether a batch augment changed its row.
    - view 2 (the contrastive view) is normalised, padded and converted
      alike, never batch-augmented, and leaves the samples untouched.
    - with ``view2_batch_augments`` (a :class:`BatchPhotometric`), every view
      after the first is colour-augmented here in training, on the model's
      device and before normalisation, instead of per sample in the loader
      (the pipeline then keeps only the view's geometric transforms).
    - a single view (validation, test, ``mode='off'``/``'dsn'`` pipelines)
      goes through it as in the plain recipe.
    - samples without ``gt_label`` in a batch (semi-supervised) skip the
      label handling (one-hot scores, batch augments).

    ``MultiView`` + ``PackInputs`` batches are read under either collate
    function: mmengine's ``pseudo_collate`` (one list of N images per view)
    and ``default_collate`` (one stacked tensor per view).

    Args:
        data_preprocessor (dict | nn.Module): The classifier's preprocessor,
            or its config (mmpretrain scope; without ``type``, a
            ``ClsDataPreprocessor`` as in ``ImageClassifier``).
        view2_batch_augments (dict | nn.Module, optional): A batch colour
            augment for the contrastive view(s), e.g.
            ``dict(type='BatchPhotometric', transforms=contrast_colour)``
            (``configs/_base_/cds/contrast_colour_batch.py``). Defaults to
            None: the views come colour-augmented from the loader.

    Shapes:
        data['inputs']: list of V lists of N tensors (C, H, W)
            (pseudo_collate), list of V tensors (N, C, H, W)
            (default_collate), or one view: list of N tensors (C, H, W) or
            one tensor (N, C, H, W).
        return['inputs']: list of V float tensors (N, C, H', W'), or one
            (N, C, H', W') tensor for a single view.
    """

    def __init__(self,
                 data_preprocessor: Union[dict, nn.Module],
                 view2_batch_augments: Optional[Union[dict,
                                                      nn.Module]] = None):
        super().__init__()
        with build_scope(MODELS):
            if not isinstance(data_preprocessor, nn.Module):
                data_preprocessor = dict(data_preprocessor)
                # as ImageClassifier: an untyped dict is a ClsDataPreprocessor
                data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
                data_preprocessor = MODELS.build(data_preprocessor)
            if isinstance(view2_batch_augments, dict):
                view2_batch_augments = MODELS.build(view2_batch_augments)
        if not (view2_batch_augments is None
                or isinstance(view2_batch_augments, nn.Module)):
            raise ValueError('view2_batch_augments must be a config dict or '
                             f'a module, got {view2_batch_augments!r}')
        self.data_preprocessor = data_preprocessor
        self.view2_batch_augments = view2_batch_augments

    def forward(self, data: dict, training: bool = False) -> dict:
        views = _views(data['inputs'])
        samples = data.get('data_samples')
        if views is None:
            return self._task_view(data['inputs'], samples, training)
        out = self._task_view(views[0], samples, training)
        rest = [
            self.data_preprocessor(
                dict(inputs=self._augment(v, training), data_samples=None),
                False)['inputs'] for v in views[1:]
        ]
        return dict(
            inputs=[out['inputs']] + rest, data_samples=out['data_samples'])

    def _augment(self, view, training: bool):
        """View 2's batch colour augment (training only), on the device."""
        if not training or self.view2_batch_augments is None:
            return view
        return self.view2_batch_augments(
            self.data_preprocessor.cast_data(view))

    def _task_view(self, inputs, samples: Optional[list],
                   training: bool) -> dict:
        inner = self.data_preprocessor
        if samples and not all('gt_label' in s for s in samples):
            out = inner(dict(inputs=inputs, data_samples=None), training)
            return dict(
                inputs=out['inputs'], data_samples=self.cast_data(samples))
        augment = getattr(inner, 'batch_augments', None)
        if not (training and samples and augment is not None):
            return inner(dict(inputs=inputs, data_samples=samples), training)
        recorder = _ChangedRows(augment)
        inner.batch_augments = recorder
        try:
            out = inner(dict(inputs=inputs, data_samples=samples), training)
        finally:
            inner.batch_augments = augment
        changed = recorder.changed
        if changed is None:  # no scores to mix (e.g. no labels)
            changed = torch.zeros(len(samples), dtype=torch.bool)
        for sample, flag in zip(out['data_samples'], changed.tolist()):
            sample.set_metainfo(dict(batch_augmented=flag))
        return out

    def to(self, *args, **kwargs) -> nn.Module:
        self.data_preprocessor.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def cuda(self, *args, **kwargs) -> nn.Module:
        self.data_preprocessor.cuda(*args, **kwargs)
        return super().cuda(*args, **kwargs)

    def cpu(self, *args, **kwargs) -> nn.Module:
        self.data_preprocessor.cpu(*args, **kwargs)
        return super().cpu(*args, **kwargs)


class _ChangedRows:
    """Call a batch augment and record which rows it changed.

    Shapes:
        changed: (N,) bool; a row mixed with itself counts as unchanged.
    """

    def __init__(self, augment):
        self.augment = augment
        self.changed: Optional[Tensor] = None

    def __call__(self, inputs: Tensor, scores: Tensor):
        before = inputs.clone()  # CutMix writes into inputs
        inputs, scores = self.augment(inputs, scores)
        self.changed = (inputs != before).flatten(1).any(1).cpu()
        return inputs, scores


def _views(inputs) -> Optional[List[Union[Tensor, List[Tensor]]]]:
    """One batch per view, or None for a single-view batch."""
    if isinstance(inputs, Tensor) or not inputs:
        return None
    first = inputs[0]
    if isinstance(first, (list, tuple)):  # pseudo_collate: views first
        return [list(view) for view in inputs]
    if isinstance(first, Tensor) and first.dim() == 4:  # default_collate
        return list(inputs)
    return None
