"""Run a module without touching its BatchNorm running statistics."""
import contextlib
from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """Leave the running statistics of ``module``'s BatchNorms as they are.

    Norms in training mode still normalise with the batch's own statistics
    (and backpropagate through them); they are only told not to track them
    meanwhile, so a pass over inputs unlike the evaluation's (e.g. at another
    resolution) does not shift what evaluation normalises with. Norms in
    eval mode use their running statistics as usual.
    """
    norms = [
        m for m in module.modules()
        if isinstance(m, _BatchNorm) and m.training and m.track_running_stats
    ]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


# The BatchNorm policy of view 2's pass, shared by CDSClassifier and
# CDSDetector (``view2_norm``); see :func:`check_view2_norm`.
VIEW2_NORMS = ('split', 'split_tracked', 'joint')


def check_view2_norm(value: str, key: str = 'model.view2_norm') -> str:
    """Validate a ``view2_norm`` value, naming the key.

    The policies, for the BatchNorms of the wrapped model in training mode:

    - ``'split'``: view 2 runs as its own batch and is normalised with its
      own batch statistics; the running statistics (what evaluation
      normalises with) track view 1 only, as in the plain recipe.
    - ``'split_tracked'``: as ``'split'``, but view 2's pass also moves the
      running statistics (a second update per step, with images that
      evaluation never sees).
    - ``'joint'``: both views run as one 2N batch and are normalised
      together, as in the authors' code; the running statistics track the
      2N batch.

    Returns:
        str: ``value``.
    """
    if value not in VIEW2_NORMS:
        raise ValueError(f'{key} must be one of {VIEW2_NORMS}, got {value!r}')
    return value


def view2_norm_context(module: nn.Module, policy: str):
    """The context of a separate view-2 pass under ``policy``: running
    statistics frozen for ``'split'``, left alone otherwise."""
    if policy == 'split':
        return frozen_running_stats(module)
    return contextlib.nullcontext()
