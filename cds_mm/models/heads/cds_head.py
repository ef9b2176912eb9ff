"""The stage-level CDS head: one projector per tapped feature plus the loss."""
import copy
import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from ..utils.loss_weights import per_tap_weights
from ..utils.weight_checks import check_weights

MODES = ('cds', 'dsn', 'off')


def build_projectors(projector: Union[dict, Sequence[dict]],
                     in_channels: Sequence[int], key: str) -> nn.ModuleList:
    """Build one projector per tapped feature from a template (or a list).

    ``in_channels`` is filled in per feature. A projector whose
    ``out_channels`` argument has no default (the paper's SepConv stack) gets
    the last feature's channels, so every stage reaches the last stage's width.
    Types resolve through the current default scope's registry (the CDS
    wrappers build their heads in their own scope, so a projector registered
    only in mmpretrain's or mmdet's ``MODELS`` is found).
    """
    templates = [projector] * len(in_channels) if isinstance(
        projector, dict) else list(projector)
    if len(templates) != len(in_channels):
        raise ValueError(f'{key}: got {len(templates)} projector configs for '
                         f'{len(in_channels)} taps')
    projectors = nn.ModuleList()
    with MODELS.switch_scope_and_registry(None) as registry:
        for cfg, channels in zip(templates, in_channels):
            cfg = copy.deepcopy(dict(cfg))
            cfg.setdefault('in_channels', channels)
            cls = registry.get(cfg['type'])
            if cls is None:
                raise ValueError(f'{key}: unknown projector type '
                                 f'{cfg["type"]!r} in the {registry.scope!r} '
                                 'registry scope')
            out = inspect.signature(cls).parameters.get('out_channels')
            if out is not None and out.default is inspect.Parameter.empty:
                cfg.setdefault('out_channels', in_channels[-1])
            projectors.append(registry.build(cfg))
    return projectors


def project_views(projector: nn.Module, views: Sequence[Tensor]) -> Tensor:
    """Project several views in one batch, e.g. both views of a tap.

    The shipped projectors take the views apart (``forward_views``: no copy
    of the inputs, norms over all views even when their sizes differ).
    Other projectors get the views concatenated, or one call per view when
    their shapes differ.

    Shapes:
        views: list of (N_v, C, ...).
        return: (sum N_v, D), rows in the order of ``views``.
    """
    if hasattr(projector, 'forward_views'):
        return projector.forward_views(views)
    if all(v.shape[1:] == views[0].shape[1:] for v in views):
        return projector(torch.cat(list(views)))
    return torch.cat([projector(v) for v in views])


@MODELS.register_module()
class CDSHead(BaseModule):
    """Contrastive deep supervision on tapped intermediate features.

    Each tapped feature of both views goes through its own projector, is
    L2-normalised and enters the contrastive loss (SupCon with labels, SimCLR
    without). The head exists for training only: the wrappers' ``predict()``
    never calls it and the export tool drops it.

    ``mode`` selects the intermediate supervision, so that baseline, DSN and
    CDS runs of one model differ in this key alone:

    - ``'cds'``: contrastive loss between the two views (the paper).
    - ``'dsn'``: deeply-supervised nets: a linear classifier after each
      projector and cross-entropy on view 1 (no second view needed).
    - ``'off'``: no intermediate supervision; the plain model.

    Args:
        taps (list[str]): Dotted names of the tapped submodules of the wrapped
            model, shallow to deep, e.g. ``['backbone.layer1', ...]``.
        in_channels (list[int], optional): Channels of each tapped feature.
            The wrappers probe them from the model when None. Defaults to None.
        mode (str): ``'cds'``, ``'dsn'`` or ``'off'``. Defaults to ``'cds'``.
        loss_weight (float | list[float]): Weight of each tap's loss.
            Defaults to 0.1 (the authors' value for every stage).
        projector (dict | list[dict]): Projector config, one for all taps or
            one per tap. Defaults to the paper's ``SepConvProjector``.
        loss (dict): Contrastive loss config. Defaults to
            ``dict(type='SupConLoss', temperature=0.07)``.
        use_labels (bool): Pass labels to the loss (SupCon). False gives
            SimCLR/NT-Xent. Defaults to True.
        num_classes (int, optional): Classes of the DSN classifiers; required
            when ``mode='dsn'``. Defaults to None.
        init_cfg (dict, optional): Initialisation config. Defaults to None.

    Shapes:
        feats: list of (N, C_i, H_i, W_i) or (N, C_i), one per tap.
        labels: (N,) int64 class ids, or None.
        projections: list of (N, D_i), L2-normalised.
    """

    def __init__(
            self,
            taps: Sequence[str],
            in_channels: Optional[Sequence[int]] = None,
            mode: str = 'cds',
            loss_weight: Union[float, Sequence[float]] = 0.1,
            projector: Union[dict,
                             Sequence[dict]] = dict(type='SepConvProjector'),
            loss: dict = dict(type='SupConLoss', temperature=0.07),
            use_labels: bool = True,
            num_classes: Optional[int] = None,
            init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.taps = list(taps)
        if in_channels is None:
            raise ValueError('cds_head.in_channels is None: build the head '
                             'through CDSClassifier/CDSDetector, which probe '
                             'the channels, or give one int per tap')
        if len(in_channels) != len(self.taps):
            raise ValueError(
                f'cds_head.in_channels has {len(in_channels)} entries for '
                f'{len(self.taps)} taps {self.taps}')
        self.in_channels = list(in_channels)
        check_weights(loss_weight, 'cds_head.loss_weight')
        self.loss_weights = per_tap_weights(loss_weight, len(self.taps),
                                            'cds_head')
        self.mode = mode
        self.use_labels = use_labels
        self.weight_scale = 1.0
        if mode == 'off':
            return
        self.projectors = build_projectors(projector, self.in_channels,
                                           'cds_head.projector')
        if mode == 'cds':
            self.loss_module = MODELS.build(loss)
        else:
            if num_classes is None:
                raise ValueError("cds_head.num_classes is required for "
                                 "mode='dsn'")
            self.classifiers = nn.ModuleList(
                nn.Linear(p.out_channels, num_classes)
                for p in self.projectors)

    @property
    def needs_second_view(self) -> bool:
        """Whether :meth:`loss` needs the features of view 2."""
        return self.mode == 'cds'

    def set_weight_scale(self, scale: float) -> None:
        """Multiply every tap's weight by ``scale`` (set by CDSWeightHook)."""
        self.weight_scale = float(scale)

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        """Project and L2-normalise each tapped feature: list of (N, D_i)."""
        if self.mode == 'off':
            return []
        self._check_feats(feats)
        return [
            F.normalize(p(f), dim=1) for p, f in zip(self.projectors, feats)
        ]

    def loss(self,
             feats: Sequence[Tensor],
             feats_view2: Optional[Sequence[Tensor]] = None,
             labels: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Intermediate losses, ``{'loss_<mode>_s<i>': ()}`` per tap."""
        if self.mode == 'off':
            return {}
        if self.mode == 'dsn':
            self._check_feats(feats)
            if labels is None:
                raise ValueError("mode='dsn' needs class labels")
            return {
                f'loss_dsn_s{i}':
                self._weight(i) * F.cross_entropy(fc(proj(f)), labels)
                for i, (proj, fc, f) in enumerate(
                    zip(self.projectors, self.classifiers, feats))
            }
        if feats_view2 is None:
            raise ValueError("mode='cds' needs the features of both views")
        return self.loss_by_projections(
            *self.project_views(feats, feats_view2), labels)

    def project_views(
            self, feats: Sequence[Tensor], feats_view2: Sequence[Tensor]
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """Projections of both views: two lists of (N, D_i), L2-normalised."""
        self._check_feats(feats)
        self._check_feats(feats_view2)
        z1, z2 = [], []
        for proj, f1, f2 in zip(self.projectors, feats, feats_view2):
            # one projector call for both views, so its norms see both (as
            # in the authors' code)
            z = F.normalize(project_views(proj, [f1, f2]), dim=1)
            z1.append(z[:f1.shape[0]])
            z2.append(z[f1.shape[0]:])
        return z1, z2

    def loss_by_projections(self,
                            z1: Sequence[Tensor],
                            z2: Sequence[Tensor],
                            labels: Optional[Tensor] = None,
                            prefix: str = 'loss_cds',
                            weight: float = 1.0) -> Dict[str, Tensor]:
        """Contrastive loss of each tap, ``{f'{prefix}_s<i>': ()}``.

        ``labels`` are ignored when ``use_labels`` is False (SimCLR);
        ``weight`` multiplies every tap's own weight.
        """
        labels = labels if self.use_labels else None
        return {
            f'{prefix}_s{i}': weight * self._weight(i) *
            self.loss_module(torch.stack([a, b], dim=1), labels)  # (N, 2, D)
            for i, (a, b) in enumerate(zip(z1, z2))
        }

    def _weight(self, i: int) -> float:
        return self.loss_weights[i] * self.weight_scale

    def _check_feats(self, feats: Sequence[Tensor]) -> None:
        if len(feats) != len(self.taps):
            raise ValueError(f'expected {len(self.taps)} features for taps '
                             f'{self.taps}, got {len(feats)}')
        for name, f, c in zip(self.taps, feats, self.in_channels):
            if f.dim() < 2 or f.shape[1] != c:
                raise ValueError(
                    f'tap {name!r} gave a feature of shape {tuple(f.shape)}, '
                    f'but cds_head.in_channels says {c} channels (dim 1)')
