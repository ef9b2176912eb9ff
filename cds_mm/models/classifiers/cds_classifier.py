"""CDS around any mmpretrain classifier, built from its config."""
import copy
from typing import Dict, List, Optional, Union

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
from ..utils.cls_batch import (dsn_targets, hard_labels, rename_task_loss,
                               running_batch_augments, with_recipe_augments,
                               zero_of, zero_on)
from ..utils.norm_stats import check_view2_norm, view2_norm_context
from ..utils.partial_forward import run_until
from ..utils.plain_checkpoint import load_plain_checkpoints
from ..utils.views import split_views, take_rows

MIXED_ROWS = ('hard_labels', 'skip')


class LossStep:
    """What one :meth:`CDSClassifier.loss` call has computed so far.

    The steps of the loss fill it in, in this order: ``losses`` and
    ``feats1`` (and ``feats2`` for ``view2_norm='joint'``) in ``_task_loss``,
    ``feats2`` in ``_view2_features``, ``z1`` / ``z2`` (lists of (N, D_i))
    when the contrastive term runs. Subclasses may add their own fields.
    """

    def __init__(self, view1: Tensor, view2: Optional[Tensor],
                 data_samples: List[DataSample], contrast: bool):
        self.view1, self.view2, self.data_samples = view1, view2, data_samples
        self.contrast = contrast  # the contrastive term runs this step
        self.losses: Dict[str, Tensor] = {}
        self.feats1: Optional[List[Tensor]] = None
        self.feats2: Optional[List[Tensor]] = None
        self.z1: Optional[List[Tensor]] = None
        self.z2: Optional[List[Tensor]] = None


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
    (``train_cfg.augments``: Mixup, CutMix) act as in the plain recipe, on
    every way of building it: no ``data_preprocessor``, an untyped one (the
    Runner's top-level dict) or a typed ``MultiViewClsDataPreprocessor`` dict
    (which gets ``train_cfg`` as its inner ``batch_augments``, as
    ``ImageClassifier`` does). A typed preprocessor that keeps none of them
    is rejected when the model is built, naming the key.
    With batch augments, the classifier's CE gets the mixed view 1 and its
    soft labels, as in the plain recipe, while view 2 is never mixed. The
    contrastive loss pairs each row's (mixed) view 1 with its (un-mixed) view
    2 and, by default, gives SupCon the hard label of the row's own image
    (``mixed_rows='hard_labels'``); ``mixed_rows='skip'`` leaves the rows a
    batch augment changed out of it (a fully mixed batch then adds a zero
    contrastive loss). DSN's auxiliary CE uses the same targets as the
    classifier's CE (the soft labels when there are any).

    **BatchNorm of view 2** (``view2_norm``, the same option and meaning as
    :class:`CDSDetector`'s): ``'split'`` normalises view 2 with its own batch
    statistics and leaves the running statistics to view 1;
    ``'split_tracked'`` also lets view 2's pass move the running statistics;
    ``'joint'`` runs both views through the whole classifier as one 2N batch,
    as the authors' code does (CE still on view 1 only; costs a second pass
    of the layers after the taps). The default is ``'split_tracked'`` at
    ``view2_scale=1``: on converged Fashion-MNIST, 3 seeds, its val top-1 is
    the best of the three, all within 0.11 points
    (``benchmarks/README.md``). Below ``view2_scale=1`` the default is
    ``'split'``: statistics of smaller images would be those evaluation
    normalises with.

    :meth:`loss` is one template for every CDS classifier
    (:class:`SemiCDSClassifier`, :class:`DistilledCDSClassifier`): they
    override its steps (``_task_rows``, ``_task_loss``, ``_contrast``,
    ``_extra_losses``), so every option acts, or is refused, in one place.

    Works with every classifier type: the default path uses only its public
    ``loss()`` and ``forward()``. ``view2_norm='joint'`` also needs
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
        view2_norm (str, optional): BatchNorm policy of view 2: ``'split'``,
            ``'split_tracked'`` or ``'joint'`` (see above). Defaults to None
            (``'split_tracked'`` at ``view2_scale=1``, else ``'split'``).
        joint_batch (bool): The older spelling of ``view2_norm='joint'``.
            Defaults to False.
        mixed_rows (str): SupCon on the rows a batch augment changed:
            ``'hard_labels'`` (keep them, with their own image's label) or
            ``'skip'``. Defaults to ``'hard_labels'``.
        view2_scale (float): A cheaper variant: view 2 is resized by this
            factor (bilinear, antialiased) after the data preprocessor,
            before its backbone pass; the projectors' norms still see both
            views. In (0, 1]; below 1 only with ``view2_norm='split'``.
            Defaults to 1.0 (the paper: same size).
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
                 view2_norm: Optional[str] = None,
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
        view2_norm = _resolve_view2_norm(view2_norm, joint_batch, view2_scale,
                                         cds_interval)
        classifier = copy.deepcopy(dict(classifier))
        if data_preprocessor is not None and 'type' not in data_preprocessor:
            classifier.setdefault('data_preprocessor', dict(data_preprocessor))
            data_preprocessor = None
        elif data_preprocessor is not None:
            data_preprocessor = with_recipe_augments(data_preprocessor,
                                                     classifier)
        with build_scope(MODELS):
            inner = MODELS.build(classifier)
            if data_preprocessor is None:
                data_preprocessor = MultiViewClsDataPreprocessor(
                    inner.data_preprocessor)
            super().__init__(
                data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if running_batch_augments(inner.data_preprocessor) is not None and \
                running_batch_augments(self.data_preprocessor) is None:
            raise ValueError(
                'model.classifier.train_cfg.augments (batch augments) would '
                f'be dropped: model.data_preprocessor '
                f'({type(self.data_preprocessor).__name__}) runs no '
                'batch_augments; wrap the classifier\'s preprocessor in '
                'MultiViewClsDataPreprocessor or give it batch_augments')
        self.classifier = inner
        self.mode = mode
        self.view2_norm = view2_norm
        self.mixed_rows = mixed_rows
        self.view2_scale = float(view2_scale)
        self.cds_interval = cds_interval
        self._loss_calls = 0  # for cds_interval; not saved: phase only
        self.probe_size = probe_size
        if view2_norm == 'joint' and mode == 'cds':
            check_head_loss(inner, "model.view2_norm='joint'")

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

    @property
    def joint_batch(self) -> bool:
        """Whether both views run as one batch (``view2_norm='joint'``)."""
        return self.view2_norm == 'joint'

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
        """Classifier loss on view 1 plus the intermediate losses.

        The one loss path of every CDS classifier; subclasses override the
        steps. Every step that may gather across ranks (the contrastive
        losses) runs on every rank whenever it runs on one, with or without
        rows.
        """
        view1, view2 = split_views(inputs, self.mode == 'cds')
        contrast = False
        if self.mode == 'cds':
            self._loss_calls += 1
            contrast = (self._loss_calls - 1) % self.cds_interval == 0
        step = LossStep(view1, view2, data_samples, contrast)
        self._task_loss(step)
        if contrast:
            if step.feats2 is None:
                step.feats2 = self._view2_features(step)
            step.z1, step.z2 = self.cds_head.project_views(
                step.feats1, step.feats2)
            step.losses.update(self._contrast(step))
        elif self.mode == 'cds':
            # the heads stay in the graph (DDP without unused parameters)
            step.losses['loss_cds_skipped'] = zero_on(self._cds_modules())
        elif self.mode == 'dsn':
            step.losses.update(
                self.cds_head.loss(
                    step.feats1,
                    labels=dsn_targets(step.data_samples, view1.device)))
        step.losses.update(self._extra_losses(step))
        return rename_task_loss(step.losses)

    # ---- the steps of loss(), overridden by the subclasses ----
    def _task_rows(self, step: LossStep) -> Optional[List[int]]:
        """The rows of view 1 that reach the classifier head and its CE;
        None for all of them through the classifier's own ``loss()``."""
        return None

    def _task_loss(self, step: LossStep) -> None:
        """The classifier's loss on view 1 (``step.losses``) and the tapped
        features (``step.feats1``; ``step.feats2`` when joint)."""
        view1, samples = step.view1, step.data_samples
        if self.mode == 'off':
            step.losses = self.classifier.loss(view1, samples)
            return
        rows = self._task_rows(step)
        if step.contrast and self.view2_norm == 'joint':
            n = view1.shape[0]
            with self.taps.capture() as both:
                feats = self.classifier.extract_feat(
                    torch.cat([view1, step.view2]))
            step.feats1 = [f[:n] for f in both]
            step.feats2 = [f[n:] for f in both]
            step.losses = self._head_loss(
                feats,
                list(range(n)) if rows is None else rows, samples)
        elif rows is None:
            with self.taps.capture() as feats1:
                step.losses = self.classifier.loss(view1, samples)
            step.feats1 = feats1
        else:
            with self.taps.capture() as feats1:
                feats = self.classifier.extract_feat(view1)
            step.feats1 = feats1
            step.losses = self._head_loss(feats, rows, samples)

    def _contrast(self, step: LossStep) -> Dict[str, Tensor]:
        """The contrastive loss of both views' projections (see
        ``mixed_rows``)."""
        z1, z2, samples = step.z1, step.z2, step.data_samples
        labels = hard_labels(samples, z1[0].device)
        if self.mixed_rows == 'skip':
            keep = [
                i for i, s in enumerate(samples)
                if not s.get('batch_augmented', False)
            ]
            z1, z2, labels = take_rows(z1, keep), take_rows(z2,
                                                            keep), labels[keep]
        return self.cds_head.loss_by_projections(z1, z2, labels)

    def _extra_losses(self, step: LossStep) -> Dict[str, Tensor]:
        """Losses a subclass adds (e.g. distillation); none here."""
        return {}

    def _cds_modules(self) -> List[nn.Module]:
        """The modules only the contrastive term trains."""
        return [self.cds_head]

    # ---- helpers ----
    def _head_loss(self, feats, rows: List[int],
                   samples: List[DataSample]) -> Dict[str, Tensor]:
        """The classifier head's loss on ``rows`` of the features of the whole
        batch; a zero that keeps every parameter in the graph without rows.
        """
        if not rows:
            return dict(loss=zero_on([self]) + zero_of(feats))
        return self.classifier.head.loss(
            take_rows(feats, rows), [samples[i] for i in rows])

    def _view2_features(self, step: LossStep) -> List[Tensor]:
        """The tapped features of view 2 at ``view2_scale``, under the
        ``view2_norm`` policy; ``step.view2`` becomes the resized view.

        Shapes:
            step.view2: (N, C, H, W), resized to (N, C, H', W') first.
        """
        if self.view2_scale != 1:
            size = [
                max(1, round(s * self.view2_scale))
                for s in step.view2.shape[2:]
            ]
            step.view2 = F.interpolate(
                step.view2,
                size=size,
                mode='bilinear',
                align_corners=False,
                antialias=True)
        with view2_norm_context(self.classifier, self.view2_norm):
            return self._tapped(step.view2)

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

    def _tapped(self, inputs: Tensor) -> List[Tensor]:
        """The tapped features of ``inputs``, the classifier run no further."""
        with self.taps.capture() as feats:
            self._run_to_taps(inputs)
        return feats

    def _run_to_taps(self, inputs: Tensor) -> None:
        run_until([self.taps.module(n) for n in self.taps.names],
                  lambda: self.classifier(inputs, mode='tensor'))


def _resolve_view2_norm(view2_norm: Optional[str], joint_batch: bool,
                        view2_scale: float, cds_interval: int) -> str:
    """Check ``view2_norm`` with the cheaper variants; the wrapper's default
    when None. Bad values raise ``ValueError`` naming the key."""
    if not 0 < view2_scale <= 1:
        raise ValueError(
            f'model.view2_scale must be in (0, 1], got {view2_scale!r}')
    if isinstance(
            cds_interval,
            bool) or not isinstance(cds_interval, int) or cds_interval < 1:
        raise ValueError(
            f'model.cds_interval must be an int >= 1, got {cds_interval!r}')
    if joint_batch:
        if view2_norm not in (None, 'joint'):
            raise ValueError(
                f'model.joint_batch=True means model.view2_norm=\'joint\', '
                f'got model.view2_norm={view2_norm!r}; set only view2_norm')
        view2_norm = 'joint'
    if view2_norm is None:
        return 'split_tracked' if view2_scale == 1 else 'split'
    check_view2_norm(view2_norm)
    if view2_scale != 1 and view2_norm != 'split':
        raise ValueError(
            f'model.view2_scale={view2_scale} with model.view2_norm='
            f'{view2_norm!r}: a smaller view 2 cannot share a batch with view '
            '1 (\'joint\') and must not move the running statistics that '
            'evaluation uses (\'split_tracked\'); use view2_norm=\'split\'')
    return view2_norm
