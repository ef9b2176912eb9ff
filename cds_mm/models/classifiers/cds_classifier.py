"""CDS around any mmpretrain classifier, built from its config."""
import copy
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..data_preprocessors import MultiViewClsDataPreprocessor
from ..heads.cds_head import MODES
from ..taps import FeatureTaps
from ..utils.build_scope import build_scope
from ..utils.classifier_api import check_head_loss
from ..utils.norm_stats import frozen_running_stats
from ..utils.partial_forward import run_until
from ..utils.plain_checkpoint import load_plain_checkpoints
from ..utils.views import split_views, take_rows

MIXED_ROWS = ('hard_labels', 'skip')


@MODELS.register_module()
class CDSClassifier(BaseModel):
    """Contrastive Deep Supervision for any mmpretrain classifier.

    The classifier's own ``loss()`` runs once on view 1 (the task recipe);
    feature taps read its intermediate outputs on the way. View 2 (the
    contrastive recipe) runs through the classifier's ``forward`` only up to
    the last tap. ``predict()``, ``forward(mode='tensor')``,
    ``extract_feat()``, ``backbone``, ``neck`` and ``head`` are the plain
    classifier's, so evaluation, deployment and upstream tools
    (``FeatureExtractor``, ``vis_tsne.py``, ``get_flops.py``) see the plain
    model. A plain classifier checkpoint loads as it is (``load_from``).

    The classifier keeps its own data preprocessor, wrapped for two views by
    :class:`MultiViewClsDataPreprocessor`, so the recipe's normalisation,
    channel order, padding, ``to_onehot`` and batch augments
    (``train_cfg.augments``: Mixup, CutMix) act as in the plain recipe.
    With batch augments, the classifier's CE gets the mixed view 1 and its
    soft labels, as in the plain recipe, while view 2 is never mixed. The
    contrastive loss pairs each row's (mixed) view 1 with its (un-mixed) view
    2 and, by default, gives SupCon the hard label of the row's own image
    (``mixed_rows='hard_labels'``); ``mixed_rows='skip'`` leaves the rows a
    batch augment changed out of it (a fully mixed batch then adds a zero
    contrastive loss). DSN's auxiliary CE uses the same targets as the
    classifier's CE (the soft labels when there are any).

    Works with every classifier type: the default path uses only its public
    ``loss()`` and ``forward()``. ``joint_batch=True`` also needs
    ``extract_feat()`` and ``head.loss()`` (as ``ImageClassifier`` has);
    other types are rejected when the model is built.

    Args:
        classifier (dict): Config of any mmpretrain classifier, e.g. an
            upstream config's ``model``.
        cds_head (dict): Config of :class:`CDSHead`; ``in_channels`` is probed
            from the tapped modules when missing, and ``num_classes`` is taken
            from the classifier's head when missing.
        mode (str): ``'cds'`` (contrastive), ``'dsn'`` (CE on auxiliary
            heads) or ``'off'`` (plain model). It overrides ``cds_head.mode``,
            so an ablation changes this key alone. Defaults to ``'cds'``.
        joint_batch (bool): Run both views through the whole classifier as
            one 2N batch, as the authors' code does (BatchNorm sees both
            views); CE still uses view 1 only. Costs a full second forward of
            the head part. Defaults to False.
        mixed_rows (str): SupCon on the rows a batch augment changed:
            ``'hard_labels'`` (keep them, with their own image's label) or
            ``'skip'``. Defaults to ``'hard_labels'``.
        view2_scale (float): A cheaper variant: view 2 is resized by this
            factor (bilinear, antialiased) after the data preprocessor,
            before its backbone pass; the projectors' norms still see both
            views. That pass does not update the classifier's BatchNorm
            running statistics (statistics of the smaller images would be
            those evaluation normalises with). In (0, 1]. Defaults to 1.0
            (the paper: same size).
        cds_interval (int): A cheaper variant: the contrastive term (and
            view 2's pass) only on every ``cds_interval``-th call of
            :meth:`loss`, counted from the first call of this process, at
            the configured weights; the other steps train the classifier
            alone. Defaults to 1 (every step, the paper).
        probe_size (int): Side of the dummy image used to probe the tapped
            channels. Defaults to 64.
        data_preprocessor (dict, optional): Defaults to a
            :class:`MultiViewClsDataPreprocessor` around the classifier's own
            preprocessor. A dict without ``type`` (the top-level
            ``data_preprocessor`` that the Runner hands to the model) becomes
            the classifier's ``data_preprocessor`` when its config has none,
            as in the plain recipe. A dict with ``type`` is built as given.
        init_cfg (dict, optional): Initialisation config. Defaults to None.

    Shapes:
        inputs (loss): list of 2 tensors (N, C, H, W), view 1 then view 2, or
            one tensor (N, C, H, W) when ``mode`` needs no second view.
        inputs (predict/tensor): (N, C, H, W).
    """

    def __init__(self,
                 classifier: dict,
                 cds_head: dict,
                 mode: str = 'cds',
                 joint_batch: bool = False,
                 mixed_rows: str = 'hard_labels',
                 view2_scale: float = 1.0,
                 cds_interval: int = 1,
                 probe_size: int = 64,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if mode not in MODES:
            raise ValueError(
                f'model.mode must be one of {MODES}, got {mode!r}')
        if mixed_rows not in MIXED_ROWS:
            raise ValueError(f'model.mixed_rows must be one of {MIXED_ROWS}, '
                             f'got {mixed_rows!r}')
        _check_cheaper_variant(
            type(self), view2_scale, cds_interval, joint_batch)
        classifier = copy.deepcopy(dict(classifier))
        if data_preprocessor is not None and 'type' not in data_preprocessor:
            classifier.setdefault('data_preprocessor', dict(data_preprocessor))
            data_preprocessor = None
        with build_scope(MODELS):
            inner = MODELS.build(classifier)
            if data_preprocessor is None:
                data_preprocessor = MultiViewClsDataPreprocessor(
                    inner.data_preprocessor)
            super().__init__(
                data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.classifier = inner
        self.mode = mode
        self.joint_batch = joint_batch
        self.mixed_rows = mixed_rows
        self.view2_scale = float(view2_scale)
        self.cds_interval = cds_interval
        self._loss_calls = 0  # for cds_interval; not saved: phase only
        self.probe_size = probe_size
        if joint_batch:
            check_head_loss(inner, 'model.joint_batch=True')

        head_cfg = copy.deepcopy(dict(cds_head))
        head_cfg['mode'] = mode
        self.taps = FeatureTaps(inner, head_cfg['taps'], 'cds_head.taps')
        self.taps.check_trainable()
        if head_cfg.get('in_channels') is None:
            dummy = torch.zeros(1, 3, probe_size, probe_size)
            head_cfg['in_channels'] = self.taps.probe_channels(
                inner, lambda: self._run_to_taps(dummy))
        if mode == 'dsn' and head_cfg.get('num_classes') is None:
            head_cfg['num_classes'] = classifier.get('head', {}).get(
                'num_classes', classifier.get('num_classes'))
        with build_scope(MODELS):
            self.cds_head = MODELS.build(head_cfg)
        load_plain_checkpoints(self, 'classifier')

    def forward(self,
                inputs: Union[Tensor, List[Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """Dispatch like mmpretrain classifiers: loss, predict or tensor."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.classifier(
                split_views(inputs, False)[0], mode='tensor')
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: Union[Tensor, List[Tensor]],
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Classifier loss on view 1 plus the intermediate losses."""
        view1, view2 = split_views(inputs, self.mode == 'cds')
        if self.mode == 'off':
            return _rename_task_loss(self.classifier.loss(view1, data_samples))
        if self.mode == 'dsn':
            with self.taps.capture() as feats1:
                losses = self.classifier.loss(view1, data_samples)
            losses.update(
                self.cds_head.loss(
                    feats1, labels=_dsn_targets(data_samples, view1.device)))
            return _rename_task_loss(losses)

        self._loss_calls += 1
        if (self._loss_calls - 1) % self.cds_interval:
            losses = self.classifier.loss(view1, data_samples)
            # the heads stay in the graph (DDP without unused parameters)
            losses['loss_cds_skipped'] = sum(
                p.sum() for p in self.cds_head.parameters()) * 0.
            return _rename_task_loss(losses)
        if self.joint_batch:
            n = view1.shape[0]
            with self.taps.capture() as both:
                feats = self.classifier.extract_feat(torch.cat([view1, view2]))
            losses = self.classifier.head.loss(
                take_rows(feats, range(n)), data_samples)
            feats1, feats2 = [f[:n] for f in both], [f[n:] for f in both]
        else:
            with self.taps.capture() as feats1:
                losses = self.classifier.loss(view1, data_samples)
            feats2 = self._view2_features(view2)
        losses.update(
            self._contrast(*self.cds_head.project_views(feats1, feats2),
                           data_samples))
        return _rename_task_loss(losses)

    def predict(self,
                inputs: Union[Tensor, List[Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        """The plain classifier's prediction (heads unused)."""
        return self.classifier.predict(
            split_views(inputs, False)[0], data_samples, **kwargs)

    def extract_feat(self, inputs: Tensor, *args, **kwargs):
        """The plain classifier's ``extract_feat`` (same arguments)."""
        return self.classifier.extract_feat(inputs, *args, **kwargs)

    @property
    def backbone(self) -> nn.Module:
        """The plain classifier's backbone."""
        return self.classifier.backbone

    @property
    def neck(self) -> Optional[nn.Module]:
        """The plain classifier's neck."""
        return self.classifier.neck

    @property
    def head(self) -> Optional[nn.Module]:
        """The plain classifier's head."""
        return self.classifier.head

    @property
    def with_neck(self) -> bool:
        """Whether the plain classifier has a neck."""
        return self.classifier.with_neck

    @property
    def with_head(self) -> bool:
        """Whether the plain classifier has a head."""
        return self.classifier.with_head

    def _contrast(self, z1: Sequence[Tensor], z2: Sequence[Tensor],
                  data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """The contrastive loss of both views' projections (see
        ``mixed_rows``); ``z1``, ``z2``: lists of (N, D_i)."""
        labels = _hard_labels(data_samples, z1[0].device)
        if self.mixed_rows == 'skip':
            keep = [
                i for i, s in enumerate(data_samples)
                if not s.get('batch_augmented', False)
            ]
            z1, z2, labels = (take_rows(z1,
                                        keep), take_rows(z2,
                                                         keep), labels[keep])
        return self.cds_head.loss_by_projections(z1, z2, labels)

    def _view2_features(self, view2: Tensor) -> List[Tensor]:
        """The tapped features of view 2 at ``view2_scale``.

        At another size, view 2's pass leaves the classifier's BatchNorm
        running statistics alone: evaluation sees images at view 1's size.

        Shapes:
            view2: (N, C, H, W), resized to (N, C, H', W') first.
        """
        if self.view2_scale == 1:
            return self._tapped(view2)
        size = [max(1, round(s * self.view2_scale)) for s in view2.shape[2:]]
        view2 = F.interpolate(
            view2,
            size=size,
            mode='bilinear',
            align_corners=False,
            antialias=True)
        with frozen_running_stats(self.classifier):
            return self._tapped(view2)

    def _tapped(self, inputs: Tensor) -> List[Tensor]:
        """The tapped features of ``inputs``, the classifier run no further."""
        with self.taps.capture() as feats:
            self._run_to_taps(inputs)
        return feats

    def _run_to_taps(self, inputs: Tensor) -> None:
        run_until([self.taps.module(n) for n in self.taps.names],
                  lambda: self.classifier(inputs, mode='tensor'))


def _check_cheaper_variant(cls: type, view2_scale: float, cds_interval: int,
                           joint_batch: bool) -> None:
    """Reject bad ``view2_scale`` / ``cds_interval`` values, naming the key.
    """
    if not 0 < view2_scale <= 1:
        raise ValueError(
            f'model.view2_scale must be in (0, 1], got {view2_scale!r}')
    if isinstance(
            cds_interval,
            bool) or not isinstance(cds_interval, int) or cds_interval < 1:
        raise ValueError(
            f'model.cds_interval must be an int >= 1, got {cds_interval!r}')
    if joint_batch and view2_scale != 1:
        raise ValueError(
            f'model.view2_scale={view2_scale} with model.joint_batch=True: '
            'one batch holds both views, so they must have one size; set '
            'one of them back to its default')
    if cls.loss is not CDSClassifier.loss and (view2_scale != 1
                                               or cds_interval != 1):
        raise ValueError(
            f'model.view2_scale / model.cds_interval are not supported by '
            f'{cls.__name__}, whose loss() is its own; leave them at 1')


def _rename_task_loss(losses: dict) -> dict:
    """mmpretrain heads call their CE ``'loss'``, the key mmengine logs the
    optimised total under; ``'loss_cls'`` keeps both visible."""
    if 'loss' in losses:
        losses['loss_cls'] = losses.pop('loss')
    return losses


def _hard_labels(data_samples: List[DataSample], device) -> Tensor:
    """(N,) int64: each sample's own class (``gt_label``)."""
    return torch.cat([ds.gt_label for ds in data_samples]).to(device)


def _dsn_targets(data_samples: List[DataSample], device) -> Tensor:
    """What the classifier's CE gets: (N, C) soft labels when the data
    preprocessor made them (``to_onehot``, batch augments), else (N,)."""
    if 'gt_score' in data_samples[0]:
        return torch.stack([ds.gt_score for ds in data_samples]).to(device)
    return _hard_labels(data_samples, device)
