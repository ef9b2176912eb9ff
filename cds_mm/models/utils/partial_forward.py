"""Run a model's forward only as far as some of its submodules."""
from typing import Callable, Sequence

import torch.nn as nn


class _Reached(Exception):
    """Raised by a forward hook once every awaited module has run."""


def run_until(modules: Sequence[nn.Module], forward: Callable[[],
                                                              object]) -> None:
    """Call ``forward()`` and stop it once each of ``modules`` has returned.

    The CDS wrappers need view 2 only up to the deepest tapped module. This
    runs any model's public forward (e.g. ``classifier(x, mode='tensor')``,
    which every mmpretrain classifier has) and cuts it there, so the layers
    after the taps (neck, head) cost nothing and no model-specific method
    such as ``extract_feat(stage=...)`` is needed. Forward hooks registered
    before the call (:meth:`FeatureTaps.capture`) still see the outputs.

    Args:
        modules (Sequence[nn.Module]): Submodules of the model that runs.
        forward (Callable): Runs the model; its result is discarded.
    """
    pending = set(range(len(modules)))

    def hook(index, *_):
        pending.discard(index)
        if not pending:
            raise _Reached

    handles = [
        m.register_forward_hook(lambda *a, i=i: hook(i, *a))
        for i, m in enumerate(modules)
    ]
    try:
        forward()
    except _Reached:
        pass
    finally:
        for handle in handles:
            handle.remove()
