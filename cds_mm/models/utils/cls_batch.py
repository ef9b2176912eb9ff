"""What the classifier wrappers read from a batch: labels, targets, and the
batch augments of the data preprocessor that runs."""
import copy
from typing import List, Optional

import torch
import torch.nn as nn
from torch import Tensor


def hard_labels(data_samples: list, device) -> Tensor:
    """(N,) int64: each sample's own class (``gt_label``)."""
    if not data_samples:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat([ds.gt_label for ds in data_samples]).to(device)


def dsn_targets(data_samples: list, device) -> Tensor:
    """What the classifier's CE gets: (N, C) soft labels when the data
    preprocessor made them (``to_onehot``, batch augments), else (N,)."""
    if data_samples and 'gt_score' in data_samples[0]:
        return torch.stack([ds.gt_score for ds in data_samples]).to(device)
    return hard_labels(data_samples, device)


def rename_task_loss(losses: dict) -> dict:
    """mmpretrain heads call their CE ``'loss'``, the key mmengine logs the
    optimised total under; ``'loss_cls'`` keeps both visible."""
    if 'loss' in losses:
        losses['loss_cls'] = losses.pop('loss')
    return losses


def running_batch_augments(preprocessor: Optional[nn.Module]):
    """The batch augments (Mixup, CutMix) of the preprocessor that runs.

    Looks at ``preprocessor`` and the preprocessors it wraps (its
    ``data_preprocessor`` attribute, as :class:`MultiViewClsDataPreprocessor`
    and mmdet's ``MultiBranchDataPreprocessor`` hold one).

    Returns:
        The first ``batch_augments`` that is set, or None.
    """
    seen: List[int] = []
    while isinstance(preprocessor, nn.Module) and id(preprocessor) not in seen:
        seen.append(id(preprocessor))
        augments = getattr(preprocessor, 'batch_augments', None)
        if augments is not None:
            return augments
        preprocessor = getattr(preprocessor, 'data_preprocessor', None)
    return None


def with_recipe_augments(data_preprocessor: dict, classifier: dict) -> dict:
    """A typed wrapper preprocessor config whose inner preprocessor config
    gets the classifier's ``train_cfg`` as ``batch_augments`` (as
    ``ImageClassifier`` injects it into its own), unless it sets its own."""
    train_cfg = classifier.get('train_cfg') or {}
    inner = data_preprocessor.get('data_preprocessor')
    if 'augments' not in train_cfg or not isinstance(inner, dict) or \
            inner.get('batch_augments') is not None:
        return data_preprocessor
    data_preprocessor = dict(data_preprocessor)
    data_preprocessor['data_preprocessor'] = dict(
        inner, batch_augments=copy.deepcopy(train_cfg))
    return data_preprocessor


def zero_on(modules: List[nn.Module]) -> Tensor:
    """A 0 that depends on every trainable parameter of ``modules``."""
    return sum(p.sum() for m in modules
               for p in m.parameters() if p.requires_grad) * 0.


def zero_of(tensors) -> Tensor:
    """A 0 that depends on ``tensors`` (a tensor or a sequence)."""
    if isinstance(tensors, Tensor):
        return tensors.sum() * 0.
    return sum(t.sum() for t in tensors) * 0.
