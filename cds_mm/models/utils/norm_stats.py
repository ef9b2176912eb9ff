"""Run a module without touching its BatchNorm running statistics."""
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
