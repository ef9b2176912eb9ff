"""Proposal-level CDS: FSCE's contrastive proposal encoding, two views."""
import copy
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from ..utils.box_pairing import HINT
from ..utils.weight_checks import check_weight
from .cds_head import build_projectors


def roi_fc_channels(detector: nn.Module) -> int:
    """Width of ``detector.roi_head.bbox_head``'s shared fcs; ValueError
    naming ``model.proposal_head`` if it has none."""
    roi_head = getattr(detector, 'roi_head', None)
    bbox_head = getattr(roi_head, 'bbox_head', None)
    if roi_head is None or not callable(getattr(roi_head, 'bbox_loss', None)):
        raise ValueError(
            'model.proposal_head needs a two-stage detector whose roi_head '
            'has a bbox_loss (e.g. StandardRoIHead); '
            f'{type(detector).__name__} has '
            f'{type(roi_head).__name__ if roi_head is not None else "none"}')
    if not getattr(bbox_head, 'num_shared_fcs', 0) or not isinstance(
            getattr(bbox_head, 'shared_fcs', None), nn.ModuleList):
        raise ValueError(
            'model.proposal_head needs detector.roi_head.bbox_head with '
            'shared fcs (a ConvFCBBoxHead such as Shared2FCBBoxHead, '
            f'num_shared_fcs >= 1), got {type(bbox_head).__name__}')
    return int(bbox_head.fc_out_channels)


@MODELS.register_module()
class ProposalCDSHead(BaseModule):
    """SupCon over the sampled proposals of a two-stage detector, two views.

    FSCE's contrastive proposal encoding (Sun et al., CVPR 2021) for mmdet
    3.x, with a second view. :meth:`record` reads, during the detector's own
    ``roi_head.loss()`` on view 1, the ``SamplingResult`` of each image and
    the shared-fc output of the bbox head (no extra forward). The same
    proposal boxes are RoIAligned on view 2's neck features and go through
    the same RoI extractor and shared fcs (:meth:`view2_features`); view 2
    never reaches the RPN or the heads' losses. Both go through one MLP and
    are L2-normalised.

    Each proposal is a sample with two views. Its label is the class of its
    assigned ground-truth box, or ``num_classes`` for a background proposal.
    Only foreground proposals whose IoU with their assigned box is at least
    ``iou_thr`` act as anchors; every other proposal (background included)
    stays in each anchor's softmax denominator. The positives of an anchor
    are its other view and every view of the same-class proposals. Unlike
    mmfewshot's loss, the mean over positives leaves the anchor itself out
    (SupCon's definition). The 'cds' branch must keep the geometry of view 1
    (photometric transforms after the shared ones; a batch resize of one
    branch is followed): the ground-truth boxes of the two views are checked,
    and an image whose boxes moved raises ``ValueError``.

    Args:
        in_channels (int): Shared-fc width of the bbox head (filled in by
            ``CDSDetector``).
        projector (dict): Projector config; ``hid_channels`` defaults to
            ``in_channels`` (FSCE: fc -> fc -> 128). Defaults to an
            ``MLPProjector`` with 128 outputs and no norm.
        loss (dict): Loss config (SupConLoss; ``gather_distributed=True``
            gathers proposals of every rank). Defaults to
            ``dict(type='SupConLoss', temperature=0.2)``.
        loss_weight (float): Weight of the loss. Defaults to 0.5.
        iou_thr (float): Smallest IoU with the assigned box of an anchor.
            Defaults to 0.8.
        init_cfg (dict, optional): Initialisation config. Defaults to None.

    Shapes:
        feats, feats_view2: (P, in_channels), the P sampled proposals of the
            batch, P >= 0.
        labels: (P,) int64 in [0, num_classes], num_classes = background.
        ious: (P,) fp32, 0 for background.
        return of loss: ``{'loss_cds_proposal': ()}``.
    """

    def __init__(self,
                 in_channels: int,
                 projector: dict = dict(
                     type='MLPProjector', out_channels=128, norm_cfg=None),
                 loss: dict = dict(type='SupConLoss', temperature=0.2),
                 loss_weight: float = 0.5,
                 iou_thr: float = 0.8,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError('proposal_head.in_channels must be an int >= 1, '
                             f'got {in_channels!r}')
        if not 0.0 < iou_thr <= 1.0:
            raise ValueError(
                f'proposal_head.iou_thr must be in (0, 1], got {iou_thr}')
        projector = copy.deepcopy(dict(projector))
        projector.setdefault('hid_channels', in_channels)
        self.in_channels = in_channels
        self.projector = build_projectors(projector, [in_channels],
                                          'proposal_head.projector')[0]
        self.loss_module = MODELS.build(loss)
        self.loss_weight = check_weight(loss_weight,
                                        'proposal_head.loss_weight')
        self.iou_thr = iou_thr
        self.weight_scale = 1.0

    def set_weight_scale(self, scale: float) -> None:
        """Multiply the weight by ``scale`` (set by CDSWeightHook)."""
        self.weight_scale = float(scale)

    def loss(self, feats: Tensor, feats_view2: Tensor, labels: Tensor,
             ious: Tensor) -> Dict[str, Tensor]:
        """``{'loss_cds_proposal': ()}`` over the proposals."""
        p = feats.shape[0]
        shapes = [tuple(t.shape) for t in (feats, feats_view2, labels, ious)]
        if shapes != [(p, self.in_channels)] * 2 + [(p, )] * 2:
            raise ValueError(
                'feats, feats_view2 must be (P, proposal_head.in_channels='
                f'{self.in_channels}), labels and ious (P,), got {shapes}')
        z = F.normalize(self.projector(torch.cat([feats, feats_view2])), dim=1)
        z = torch.stack([z[:p], z[p:]], dim=1)  # (P, 2, D)
        loss = self.loss_module(z, labels, ious >= self.iou_thr)
        return dict(loss_cds_proposal=self.loss_weight * self.weight_scale *
                    loss)

    @staticmethod
    @contextmanager
    def record(roi_head: nn.Module) -> Iterator[dict]:
        """Inside the block, ``roi_head.bbox_loss`` (wrapped by an instance
        attribute, removed on exit) fills the yielded dict with its
        ``sampling_results`` and ``feats`` (P, C), the last shared fc's
        output with ReLU, with gradient."""
        record: dict = {}
        bbox_loss = roi_head.bbox_loss
        last_fc = roi_head.bbox_head.shared_fcs[-1]

        def recording_bbox_loss(x, sampling_results, *args, **kwargs):
            outs: List[Tensor] = []
            handle = last_fc.register_forward_hook(
                lambda _m, _i, out: outs.append(out))
            try:
                results = bbox_loss(x, sampling_results, *args, **kwargs)
            finally:
                handle.remove()
            if len(outs) != 1:
                raise RuntimeError('proposal_head: the last shared fc of the '
                                   f'bbox head ran {len(outs)} times in '
                                   'roi_head.bbox_loss, expected once')
            # the head's ReLU may run in place on ``outs[0]``: relu is
            # idempotent, so this is the shared feature either way
            record.update(
                sampling_results=list(sampling_results), feats=F.relu(outs[0]))
            return results

        patched = vars(roi_head).get('bbox_loss')  # e.g. a test's own patch
        roi_head.bbox_loss = recording_bbox_loss
        try:
            yield record
        finally:
            del roi_head.bbox_loss  # the class method shows again
            if patched is not None:
                roi_head.bbox_loss = patched

    def contrast_inputs(self, record: dict, roi_head: nn.Module,
                        feats_view2: Sequence[Tensor], samples: Sequence,
                        samples_view2: Sequence) -> Tuple[Tensor, ...]:
        """The arguments of :meth:`loss` from a :meth:`record` of view 1 and
        the two views' ``DetDataSample``s.

        Shapes:
            feats_view2: the neck levels of view 2, (N, C, H_l, W_l) each.
            return: feats, feats_view2, labels, ious as in :meth:`loss`.
        """
        # mmdet only here: a classification-only install imports this file
        from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
        if 'feats' not in record:
            raise RuntimeError('proposal_head: roi_head.bbox_loss did not run '
                               "during the detector's loss()")
        num_classes = roi_head.bbox_head.num_classes
        priors2, labels, ious = [], [], []
        for i, (res, s1, s2) in enumerate(
                zip(record['sampling_results'], samples, samples_view2)):
            pos, neg, gt = (
                get_box_tensor(b)
                for b in (res.pos_priors, res.neg_priors, res.pos_gt_bboxes))
            scale = _view2_scale(i, s1, s2, get_box_tensor)
            priors2.append(torch.cat([pos, neg]) * scale.to(pos))
            bg = torch.full((len(neg), ), num_classes, device=pos.device)
            labels.append(torch.cat([res.pos_gt_labels.long(), bg]))
            iou = bbox_overlaps(pos, gt, is_aligned=True).float()
            ious.append(torch.cat([iou, neg.new_zeros(len(neg))]))
        f2 = self.view2_features(roi_head, feats_view2, priors2)
        return record['feats'], f2, torch.cat(labels), torch.cat(ious)

    @staticmethod
    def view2_features(roi_head: nn.Module, feats_view2: Sequence[Tensor],
                       priors: List[Tensor]) -> Tensor:
        """The bbox head's shared-fc features of ``priors`` on view 2.

        The RoI extractor, shared head (if any), shared convs and shared fcs
        of ``roi_head``, as its ``_bbox_forward`` runs them.

        Shapes:
            feats_view2: the neck levels, (N, C, H_l, W_l) each.
            priors: N tensors (P_j, 4) in view-2 input pixels.
            return: (sum P_j, fc_out_channels).
        """
        from mmdet.structures.bbox import bbox2roi
        extractor, head = roi_head.bbox_roi_extractor, roi_head.bbox_head
        rois = bbox2roi(priors)
        x = extractor(tuple(feats_view2)[:extractor.num_inputs], rois)
        if getattr(roi_head, 'with_shared_head', False):
            x = roi_head.shared_head(x)
        for conv in head.shared_convs:
            x = conv(x)
        if head.with_avg_pool:
            x = head.avg_pool(x)
        x = x.flatten(1)
        for fc in head.shared_fcs:
            x = head.relu(fc(x))
        return x


def _view2_scale(image: int, sample, sample_view2, get_box_tensor) -> Tensor:
    """Per-axis scale (x, y, x, y) from view 1's boxes to view 2's (a batch
    resize of one branch); ValueError if view 2 moved its boxes otherwise."""
    b1, b2 = (
        get_box_tensor(s.gt_instances.bboxes).float()
        for s in (sample, sample_view2))
    shape1, shape2 = (
        s.metainfo.get('img_shape') for s in (sample, sample_view2))
    scale = torch.ones(4, device=b1.device)
    if shape1 is not None and shape2 is not None:
        sy, sx = (float(b) / float(a) for a, b in zip(shape1, shape2))
        scale = torch.tensor([sx, sy, sx, sy], device=b1.device)
    side = max(shape2) if shape2 is not None else 1.0
    moved = b1.shape != b2.shape or bool(
        len(b1) and (b1 * scale - b2.to(b1.device)).abs().max() > 1e-3 * side)
    if moved:
        raise ValueError(
            f'proposal_head: image {image} of the batch holds other boxes in '
            "view 2 than in view 1, so the 'cds' branch moved them and a "
            'proposal box of view 1 would not show the same object in view '
            f'2: {HINT}')
    return scale
