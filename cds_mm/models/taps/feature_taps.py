"""Forward hooks that capture intermediate outputs during a model's own
forward."""
import difflib
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Sequence

import torch
import torch.nn as nn
from torch import Tensor


class FeatureTaps:
    """Capture the outputs of named submodules while the model runs as usual.

    The CDS wrappers use this to read the backbone stages / neck levels of
    view 1 from the inner model's own ``loss()``, so view 1 is computed once.
    Hooks exist only inside :meth:`capture`; nothing survives it, so no hook
    leaks across iterations, into ``predict()`` or into a saved model.

    Args:
        model (nn.Module): The model whose submodules are tapped.
        names (Sequence[str]): Dotted submodule names, as in
            ``model.named_modules()``, e.g. ``'backbone.layer1'`` or
            ``'neck.fpn_convs.0'``.
        key (str): The config key the names came from, quoted in errors.
            Defaults to ``'taps'``.

    Raises:
        ValueError: if a name is empty, repeated, or not a submodule.

    Example:
        >>> taps = FeatureTaps(classifier, ['backbone.layer1',
            'backbone.layer4'])
        >>> with taps.capture() as feats:
        ...     losses = classifier.loss(inputs, data_samples)
        >>> [f.shape for f in feats]  # in the order of ``names``
    """

    def __init__(self,
                 model: nn.Module,
                 names: Sequence[str],
                 key: str = 'taps'):
        names = list(names)
        if not names:
            raise ValueError(f'{key} must name at least one submodule, got []')
        if len(set(names)) != len(names):
            raise ValueError(f'{key} names a submodule twice: {names}')
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules or name == '':
                close = difflib.get_close_matches(
                    name, modules, n=5, cutoff=0.5)
                raise ValueError(
                    f'{key}: {name!r} is not a submodule of '
                    f'{type(model).__name__}; close names: {close or "none"}')
        self.names: List[str] = names
        self._modules: Dict[str, nn.Module] = {n: modules[n] for n in names}

    def module(self, name: str) -> nn.Module:
        """The tapped submodule called ``name``."""
        return self._modules[name]

    @contextmanager
    def capture(self) -> Iterator[List[Tensor]]:
        """Record each tapped module's output during the ``with`` block.

        Yields:
            list[Tensor]: Filled when the block exits, one tensor per name in
            :attr:`names` order.

        Raises:
            RuntimeError: if a tapped module did not run, ran twice, or did
                not return a single tensor.
        """
        outputs: Dict[str, list] = {name: [] for name in self.names}
        handles = [
            module.register_forward_hook(
                lambda _m, _i, out, name=name: outputs[name].append(out))
            for name, module in self._modules.items()
        ]
        feats: List[Tensor] = []
        try:
            yield feats
        finally:
            for handle in handles:
                handle.remove()
        for name in self.names:
            got = outputs[name]
            if len(got) != 1:
                raise RuntimeError(
                    f'tapped module {name!r} ran {len(got)} times in one '
                    'forward; tap a module that runs exactly once')
            if not isinstance(got[0], Tensor):
                raise RuntimeError(
                    f'tapped module {name!r} returned '
                    f'{type(got[0]).__name__}, '
                    'expected a Tensor (N, C, H, W); tap a submodule that '
                    'returns one tensor')
            feats.append(got[0])

    def check_trainable(self) -> None:
        """Reject taps on frozen modules (e.g. ResNet ``frozen_stages``).

        A head there would supervise nothing and, under DDP, leave the frozen
        stage out of the graph the head expects to train.
        """
        for name, module in self._modules.items():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                raise ValueError(
                    f'tap {name!r} is a frozen module (no parameter requires '
                    'grad): drop it from cds_head.taps or lower the '
                    "backbone's frozen_stages")

    @torch.no_grad()
    def probe_channels(self, model: nn.Module,
                       run: Callable[[], object]) -> List[int]:
        """Channels (dim 1) of each tapped output, from one forward ``run()``.

        ``model`` runs in eval mode under no_grad, then gets its mode back.
        """
        was_training = model.training
        model.eval()
        try:
            with self.capture() as feats:
                run()
        finally:
            model.train(was_training)
        return [int(f.shape[1]) for f in feats]
