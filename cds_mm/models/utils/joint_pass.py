"""Run a detector's view 1 and view 2 as one 2N batch inside its own loss()."""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor


class JointExtract:
    """``view2_norm='joint'`` for a detector: both views through backbone
    and neck as one 2N batch, so every BatchNorm normalises them together
    (as the authors' code does for classifiers).

    Inside the ``with`` block the detector's ``extract_feat`` (which every
    mmdet detector's ``loss()`` calls once on its inputs) runs on view 1
    concatenated with ``inputs2`` and returns view 1's half, so the
    detector's heads and losses see view 1 only. Afterwards :meth:`split`
    cuts what the taps recorded into the two views.

    Args:
        detector (nn.Module): The wrapped mmdet detector.
        inputs2 (Tensor): View 2's batch, the shape of view 1's.

    Shapes:
        inputs2: (N, 3, H, W); the tapped outputs: (2N, ...) -> two (N, ...).
    """

    def __init__(self, detector: nn.Module, inputs2: Tensor):
        self.detector = detector
        self.inputs2 = inputs2
        self.feats: Optional[Tuple[Tensor, ...]] = None
        self.n = 0

    def __enter__(self) -> 'JointExtract':
        extract = self.detector.extract_feat

        def joint_extract(inputs: Tensor):
            if self.feats is not None:
                raise RuntimeError(
                    "model.view2_norm='joint': the detector's loss() called "
                    'extract_feat twice; use view2_norm=\'split\'')
            if inputs.shape[1:] != self.inputs2.shape[1:]:
                raise ValueError(
                    "model.view2_norm='joint' runs both branches as one "
                    f'batch, but they are {tuple(inputs.shape)} and '
                    f'{tuple(self.inputs2.shape)}: give both branches one '
                    "size (pad alike) or use view2_norm='split'")
            self.n = inputs.shape[0]
            self.feats = tuple(extract(torch.cat([inputs, self.inputs2])))
            return tuple(f[:self.n] for f in self.feats)

        self.detector.extract_feat = joint_extract  # an instance attribute
        return self

    def __exit__(self, *exc) -> None:
        del self.detector.extract_feat  # the class's method again

    def split(
        self, tapped: List[Tensor]
    ) -> Tuple[List[Tensor], List[Tensor], Tuple[Tensor, ...]]:
        """View 1's and view 2's halves of the tapped outputs, and view 2's
        ``extract_feat`` output."""
        if self.feats is None:
            raise ValueError(
                "model.view2_norm='joint': "
                f"{type(self.detector).__name__}.loss() never called "
                "extract_feat, so the views cannot share a batch; use "
                "view2_norm='split'")
        n = self.n
        return ([t[:n] for t in tapped], [t[n:] for t in tapped],
                tuple(f[n:] for f in self.feats))
