"""CDS around any mmdet detector, built from its config."""
import contextlib
import copy
import logging
from typing import Dict, Optional, Tuple, Union

import torch
from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from mmengine.logging import print_log
from torch import Tensor

from ..heads.proposal_cds_head import roi_fc_channels
from ..taps import FeatureTaps
from ..utils.build_scope import build_scope
from ..utils.joint_pass import JointExtract
from ..utils.norm_stats import check_view2_norm, view2_norm_context
from ..utils.plain_checkpoint import load_plain_checkpoints

DET_MODES = ('cds', 'off')


@MODELS.register_module()
class CDSDetector(BaseDetector):
    """Contrastive Deep Supervision for an mmdet detector.

    Follows mmdet's ``SemiBaseDetector``: the detector is built from its own
    config (``detector=_base_.model``) and the data come as two branches of
    mmdet's ``MultiBranch`` transform, ``'main'`` (the task recipe) and
    ``'cds'`` (the contrastive recipe). View 1 runs through the detector's own
    ``loss()`` once, with feature taps reading the tapped backbone stages /
    FPN levels; view 2 runs through backbone (+ neck only if a neck is tapped)
    and never reaches the RPN or RoI heads. ``predict()`` and ``_forward()``
    are the plain detector's. A plain detector checkpoint (e.g. a
    COCO-trained Faster R-CNN to fine-tune from) loads as it is through
    ``load_from``: its keys go under ``detector.``.

    Args:
        detector (dict): Config of any mmdet detector.
        cds_head (dict, optional): Image-level :class:`CDSHead` config: SimCLR
            between the two views of each image. An image holds many objects,
            so there is no image label: ``use_labels`` defaults to False here
            and ``use_labels=True`` or a ``mode`` other than ``'cds'`` is
            rejected.
        instance_head (dict, optional): :class:`InstanceCDSHead` config (SupCon
            over ground-truth boxes in both views).
        proposal_head (dict, optional): :class:`ProposalCDSHead` config
            (SupCon over the RoI head's sampled proposals in both views);
            needs a detector with a ``roi_head``.
        mode (str): ``'cds'`` or ``'off'`` (the plain detector trained on the
            same data, for baselines). Defaults to ``'cds'``.
        view2_norm (str, optional): BatchNorm policy of view 2, the same
            option and meaning as :class:`CDSClassifier`'s, for the
            detector's BatchNorms in training mode: ``'split'`` (view 2 is
            normalised with its own batch statistics; the running statistics
            track view 1 only, as in the baseline, since evaluation sees
            images of view 1's recipe), ``'split_tracked'`` (view 2's pass
            moves them too) or ``'joint'`` (both views through backbone and
            neck as one 2N batch, as the authors' code does for
            classifiers; the detector's heads and losses still see view 1
            only; both branches must have one batch size). Defaults to None
            (``'split'``, this wrapper's behaviour so far).
        view2_norm_stats (bool, optional): Deprecated spelling: True is
            ``view2_norm='split_tracked'``, False ``'split'``. Defaults to
            None.
        probe_size (int): Side of the dummy image used to probe the tapped
            channels. Defaults to 128.
        data_preprocessor (dict, optional): Defaults to mmdet's
            ``MultiBranchDataPreprocessor`` around the detector's own.
        init_cfg (dict, optional): Initialisation config. Defaults to None.

    Shapes:
        multi_batch_inputs (loss): ``{'main': (N, 3, H, W), 'cds': (N, 3, H',
            W')}``.
        batch_inputs (predict): (N, 3, H, W).
    """

    branches = ('main', 'cds')

    def __init__(self,
                 detector: dict,
                 cds_head: Optional[dict] = None,
                 instance_head: Optional[dict] = None,
                 proposal_head: Optional[dict] = None,
                 mode: str = 'cds',
                 view2_norm: Optional[str] = None,
                 view2_norm_stats: Optional[bool] = None,
                 probe_size: int = 128,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if mode not in DET_MODES:
            raise ValueError(f'model.mode must be one of {DET_MODES} for '
                             f'detectors, got {mode!r}')
        if mode == 'cds' and cds_head is None and instance_head is None \
                and proposal_head is None:
            raise ValueError("mode='cds' needs cds_head, instance_head or "
                             'both, or proposal_head')
        detector = copy.deepcopy(dict(detector))
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='mmdet.MultiBranchDataPreprocessor',
                data_preprocessor=detector['data_preprocessor'])
        with build_scope(MODELS):
            super().__init__(
                data_preprocessor=data_preprocessor, init_cfg=init_cfg)
            self.detector = MODELS.build(detector)
        self.mode = mode
        self.view2_norm = _view2_norm(view2_norm, view2_norm_stats)
        self.cds_head = self._build_head(cds_head, 'cds_head', probe_size)
        self.instance_head = self._build_head(instance_head, 'instance_head',
                                              probe_size)
        self.proposal_head = None
        if proposal_head is not None and mode != 'off':
            proposal_head = dict(proposal_head)
            proposal_head.setdefault('in_channels',
                                     roi_fc_channels(self.detector))
            with build_scope(MODELS):
                self.proposal_head = MODELS.build(proposal_head)
        load_plain_checkpoints(self, 'detector')
        names = [
            n for head in (self.cds_head, self.instance_head) if head
            for n in head.taps
        ]
        self.taps = FeatureTaps(
            self.detector, list(dict.fromkeys(names)),
            'cds_head.taps/instance_head.taps') if names else None
        self._view2_needs_neck = self.proposal_head is not None or any(
            n.startswith('neck.') for n in names)

    def _build_head(self, cfg: Optional[dict], key: str, probe_size: int):
        if cfg is None or self.mode == 'off':
            return None
        cfg = copy.deepcopy(dict(cfg))
        if key == 'cds_head':
            _check_image_level(cfg)
        taps = FeatureTaps(self.detector, cfg['taps'], f'{key}.taps')
        taps.check_trainable()
        if cfg.get('in_channels') is None:
            dummy = torch.zeros(1, 3, probe_size, probe_size)
            cfg['in_channels'] = taps.probe_channels(
                self.detector, lambda: self.detector.extract_feat(dummy))
        with build_scope(MODELS):
            return MODELS.build(cfg)

    def loss(
        self, multi_batch_inputs: Union[Dict[str, Tensor], Tensor],
        multi_batch_data_samples: Union[Dict[str, SampleList], SampleList]
    ) -> dict:
        """Detector losses on view 1 plus ``loss_cds_*`` per tapped level."""
        if self.mode == 'off' and not isinstance(multi_batch_inputs, dict):
            return self.detector.loss(multi_batch_inputs,
                                      multi_batch_data_samples)
        if not isinstance(multi_batch_inputs, dict) or set(
                self.branches) - set(multi_batch_inputs):
            raise ValueError(
                'CDSDetector needs the branches {main, cds}: end the train '
                "pipeline with MultiBranch(branch_field=['main', 'cds'], ...) "
                'and use MultiBranchDataPreprocessor')
        inputs1, samples1 = multi_batch_inputs[
            'main'], multi_batch_data_samples['main']
        if self.mode == 'off':
            return self.detector.loss(inputs1, samples1)
        inputs2, samples2 = multi_batch_inputs[
            'cds'], multi_batch_data_samples['cds']

        proposals = contextlib.nullcontext() if self.proposal_head is None \
            else self.proposal_head.record(self.detector.roi_head)
        joint = JointExtract(self.detector, inputs2) \
            if self.view2_norm == 'joint' else contextlib.nullcontext()
        with self._capture() as tapped1, proposals as record, joint:
            losses = self.detector.loss(inputs1, samples1)
        if self.view2_norm == 'joint':  # one 2N pass; taps hold both views
            tapped1, tapped2, feats2 = joint.split(tapped1)
        else:
            with self._capture() as tapped2, view2_norm_context(
                    self.detector, self.view2_norm):
                if self._view2_needs_neck:
                    feats2 = self.detector.extract_feat(inputs2)
                else:
                    self.detector.backbone(inputs2)
        names = [] if self.taps is None else self.taps.names
        by_name1 = dict(zip(names, tapped1))
        by_name2 = dict(zip(names, tapped2))

        if self.cds_head is not None:
            losses.update(
                self.cds_head.loss([by_name1[n] for n in self.cds_head.taps],
                                   [by_name2[n] for n in self.cds_head.taps]))
        if self.instance_head is not None:
            taps = self.instance_head.taps
            losses.update(
                self.instance_head.loss(
                    [by_name1[n] for n in taps], [by_name2[n] for n in taps],
                    [get_box_tensor(s.gt_instances.bboxes) for s in samples1],
                    [get_box_tensor(s.gt_instances.bboxes) for s in samples2],
                    [s.gt_instances.labels for s in samples1],
                    (inputs1.shape[-2:], inputs2.shape[-2:]),
                    _instance_ids(samples1, samples2),
                    [[s.metainfo.get('img_shape') for s in ss]
                     for ss in (samples1, samples2)]))
        if self.proposal_head is not None:
            head = self.proposal_head
            losses.update(
                head.loss(*head.contrast_inputs(record, self.detector.roi_head,
                                                feats2, samples1, samples2)))
        return losses

    def _capture(self):
        """The taps' capture, or an empty list when nothing is tapped."""
        if self.taps is None:
            return contextlib.nullcontext([])
        return self.taps.capture()

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """The plain detector's prediction (heads unused)."""
        return self.detector.predict(
            batch_inputs, batch_data_samples, rescale=rescale)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: Optional[SampleList] = None) -> Tuple:
        """The plain detector's raw outputs."""
        return self.detector._forward(batch_inputs, batch_data_samples)

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        """The plain detector's backbone (+ neck) features."""
        return self.detector.extract_feat(batch_inputs)


def _view2_norm(view2_norm: Optional[str],
                view2_norm_stats: Optional[bool]) -> str:
    """``view2_norm``, or the one the deprecated ``view2_norm_stats``
    spells (warned); ``'split'`` when neither is set."""
    if view2_norm_stats is not None:
        alias = 'split_tracked' if view2_norm_stats else 'split'
        if view2_norm not in (None, alias):
            raise ValueError(
                f'model.view2_norm_stats={view2_norm_stats} (deprecated) '
                f'means model.view2_norm={alias!r}, got {view2_norm!r}; '
                'set only view2_norm')
        print_log(
            'CDSDetector: model.view2_norm_stats is deprecated; use '
            f'model.view2_norm={alias!r}',
            logger='current',
            level=logging.WARNING)
        view2_norm = alias
    return check_view2_norm('split' if view2_norm is None else view2_norm)


def _instance_ids(samples1: SampleList, samples2: SampleList):
    """Both views' ``gt_instances.instance_ids`` (None where a sample has
    none), or None when no sample has them (boxes pair by position)."""
    ids = [[s.gt_instances.get('instance_ids') for s in ss]
           for ss in (samples1, samples2)]
    return None if all(i is None for view in ids for i in view) else ids


def _check_image_level(cfg: dict) -> None:
    """Reject image-level head settings that need image labels."""
    if cfg.setdefault('use_labels', False):
        raise ValueError(
            'model.cds_head.use_labels=True: CDSDetector has no image-level '
            'labels (an image holds many objects), so the image-level head '
            'can only run SimCLR; set use_labels=False, or use '
            'model.instance_head for SupCon over box classes')
    if cfg.get('mode', 'cds') != 'cds':
        raise ValueError(
            f"model.cds_head.mode={cfg['mode']!r}: CDSDetector's image-level "
            "head supports only 'cds' (DSN needs image labels); use "
            "model.mode='off' for the plain detector")
