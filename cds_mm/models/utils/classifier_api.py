"""What a CDS wrapper needs from the classifier it wraps, checked at build.

Every mmpretrain classifier (``BaseClassifier``) has ``loss()``,
``predict()`` and ``forward(mode='tensor')``; the CDS wrappers' default paths
use only those. Two paths need more, and a classifier without it is rejected
when the config is built, with its type and what is missing:

- CE on part of a batch whose features were computed on all of it
  (``view2_norm='joint'``; :class:`SemiCDSClassifier`): ``extract_feat()``
  and a ``head`` with ``loss()``, as ``ImageClassifier`` has.
- Logit distillation (:class:`DistilledCDSClassifier`): one submodule whose
  output is the logits (``head`` of ``ImageClassifier``, ``model`` of
  ``TimmClassifier``), so the student's own ``loss()`` gives them.
"""
from typing import Callable

import torch
import torch.nn as nn

from ..taps import FeatureTaps

LOGIT_MODULES = ('head', 'model')


def check_head_loss(classifier: nn.Module, key: str) -> None:
    """Reject a classifier without ``extract_feat()`` and ``head.loss()``.

    Args:
        classifier (nn.Module): The built inner classifier.
        key (str): The setting that needs them, named in the error.
    """
    head = getattr(classifier, 'head', None)
    if isinstance(head, nn.Module) and callable(getattr(
            head, 'loss', None)) and callable(
                getattr(classifier, 'extract_feat', None)):
        return
    raise ValueError(
        f'{key} computes the features of the whole batch once and the '
        "classifier's loss on some rows, which needs extract_feat() and a "
        'head with loss() (as ImageClassifier has); '
        f'{type(classifier).__name__} has no head with loss()')


@torch.no_grad()
def logits_taps(classifier: nn.Module, run: Callable[[], torch.Tensor],
                key: str) -> FeatureTaps:
    """Taps on the submodule whose output is ``classifier``'s logits.

    Tries ``head`` then ``model``: the first whose output equals what
    ``run()`` (the classifier's ``forward(mode='tensor')`` on a dummy batch)
    returns. ``classifier`` runs once, in eval mode.

    Args:
        classifier (nn.Module): The built inner classifier.
        run (Callable): Returns the classifier's logits for a dummy batch.
        key (str): The wrapper, named in the error.

    Returns:
        FeatureTaps: One tap, on the logits module.
    """
    names = [
        n for n in LOGIT_MODULES
        if isinstance(getattr(classifier, n, None), nn.Module)
    ]
    outputs = {}
    handles = [
        getattr(classifier, n).register_forward_hook(
            lambda _m, _i, out, n=n: outputs.setdefault(n, out)) for n in names
    ]
    was_training = classifier.training
    classifier.eval()
    try:
        logits = run()
    finally:
        classifier.train(was_training)
        for handle in handles:
            handle.remove()
    for name in names:
        out = outputs.get(name)
        if isinstance(out, torch.Tensor) and out.shape == logits.shape \
                and torch.equal(out, logits):
            return FeatureTaps(classifier, [name], key)
    raise ValueError(
        f'{key} distils the logits that the student classifier computes in '
        f'its own loss(), read from its submodule {" or ".join(LOGIT_MODULES)}'
        f'; no such submodule of {type(classifier).__name__} returns the '
        "logits of forward(mode='tensor')")
