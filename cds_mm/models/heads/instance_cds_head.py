"""Instance-level CDS: contrast RoI features of the same box in two views."""
import copy
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor
from torchvision.ops import roi_align

from ..utils.box_pairing import pair_boxes
from ..utils.dist import all_reduce_max
from ..utils.loss_weights import per_tap_weights
from ..utils.weight_checks import check_weights
from .cds_head import build_projectors

# below every label and above none: the (-min, max) of a box-free rank
_NO_LABEL = torch.iinfo(torch.int64).min


@MODELS.register_module()
class InstanceCDSHead(BaseModule):
    """SupCon between the RoI features of ground-truth boxes in two views.

    Each box is RoIAligned on every tapped level in view 1 and in view 2 (the
    same box there, by the identity the pipeline carries: see
    :func:`pair_boxes`), projected, L2-normalised and contrasted with the box
    class labels. Boxes carry an identity either as
    ``gt_instances.instance_ids`` in both branches (boxes with the same id
    pair up; ``AddInstanceIds`` + ``PackDetInputsWithIds`` put them there),
    or, in the usual pipeline whose ``'cds'`` branch is
    photometric only, as the same boxes in the same order, which is checked;
    boxes that cannot be paired raise a ``ValueError`` naming the image and
    the cause, so no box is contrasted with another one. RoIAlign scales the
    boxes per axis (feature size / input size on each axis) and keeps their
    coordinates in fp32, also under AMP. An image with more than
    ``max_boxes_per_image`` pairs contributes a random subset of that size,
    drawn from torch's global RNG (so a seeded run is reproducible).

    When every box of the batch (of all ranks, when the loss gathers across
    ranks) has the same label, SupCon would have no negatives and could only
    pull all boxes together: such a batch uses SimCLR over boxes instead
    (positive: the same box in the other view; negatives: the other boxes),
    with a one-time warning. ``use_labels=False`` uses SimCLR always.

    In training mode the mean cosine similarity between the projections of
    different boxes (view 1) is logged per tap as ``train/cds_inst_cos_s<i>``
    (this rank's boxes): near 1 means the box embeddings collapsed, as SupCon
    over a single class makes them do, after which that loss teaches nothing
    (``benchmarks/det_grad_norms.py`` measures it).

    A batch without boxes still runs every step, on empty tensors, so the zero
    loss touches every parameter (DDP needs that) and, with
    ``gather_distributed=True``, the rank joins every collective of the loss.

    Args:
        taps (list[str]): Dotted names of the tapped modules (FPN levels or
            backbone stages) of the wrapped detector.
        in_channels (list[int], optional): Channels of each tapped feature;
            probed by the wrapper when None. Defaults to None.
        roi_size (int): RoIAlign output side. Defaults to 7.
        loss_weight (float | list[float]): Weight per tap. Defaults to 0.1.
        projector (dict | list[dict]): Projector config. Defaults to an
            ``MLPProjector`` with 256 hidden and 128 output channels.
        loss (dict): Contrastive loss config. Defaults to
            ``dict(type='SupConLoss', temperature=0.07)``.
        use_labels (bool): SupCon over box classes (True; SimCLR for batches
            of one class) or SimCLR over boxes (False). Defaults to True.
        max_boxes_per_image (int, optional): Most boxes contrasted per image;
            None keeps all. Defaults to 100.
        init_cfg (dict, optional): Initialisation config. Defaults to None.

    Shapes:
        feats, feats_view2: list of (N, C_i, H_i, W_i), one per tap.
        boxes, boxes_view2: list of N tensors (M_j, 4), x1y1x2y2 in input
            pixels, M_j >= 0.
        labels: list of N tensors (M_j,) int64 (view 1's boxes).
        input_sizes: (H, W) of the (padded) batch input of view 1 and view 2.
        instance_ids: None, or two lists (view 1, view 2) of N tensors
            (M_j,) naming each box.
        img_shapes: None, or two lists (view 1, view 2) of N (H, W) image
            sizes (before padding).
    """

    def __init__(self,
                 taps: Sequence[str],
                 in_channels: Optional[Sequence[int]] = None,
                 roi_size: int = 7,
                 loss_weight: Union[float, Sequence[float]] = 0.1,
                 projector: Union[dict, Sequence[dict]] = dict(
                     type='MLPProjector', hid_channels=256, out_channels=128),
                 loss: dict = dict(type='SupConLoss', temperature=0.07),
                 use_labels: bool = True,
                 max_boxes_per_image: Optional[int] = 100,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.taps = list(taps)
        if in_channels is None or len(in_channels) != len(self.taps):
            raise ValueError(
                f'instance_head.in_channels must give one int per tap '
                f'{self.taps}, got {in_channels}')
        if roi_size < 1:
            raise ValueError(
                f'instance_head.roi_size must be >= 1, got {roi_size}')
        if max_boxes_per_image is not None and max_boxes_per_image < 1:
            raise ValueError('instance_head.max_boxes_per_image must be >= 1 '
                             f'or None, got {max_boxes_per_image}')
        self.in_channels = list(in_channels)
        check_weights(loss_weight, 'instance_head.loss_weight')
        self.loss_weights = per_tap_weights(loss_weight, len(self.taps),
                                            'instance_head')
        self.roi_size = roi_size
        self.use_labels = use_labels
        self.max_boxes_per_image = max_boxes_per_image
        self.weight_scale = 1.0
        self.projectors = build_projectors(
            copy.deepcopy(projector), self.in_channels,
            'instance_head.projector')
        self.loss_module = MODELS.build(loss)
        self._warned_one_label = False

    def set_weight_scale(self, scale: float) -> None:
        """Multiply every tap's weight by ``scale`` (set by CDSWeightHook)."""
        self.weight_scale = float(scale)

    def loss(self,
             feats: Sequence[Tensor],
             feats_view2: Sequence[Tensor],
             boxes: List[Tensor],
             boxes_view2: List[Tensor],
             labels: List[Tensor],
             input_sizes: Sequence[Sequence[int]],
             instance_ids: Optional[Sequence[List[Tensor]]] = None,
             img_shapes: Optional[Sequence[list]] = None) -> Dict[str, Tensor]:
        """``{'loss_cds_inst_s<i>': ()}`` per tap."""
        self._check_feats(feats, feats_view2)
        rois1, rois2, box_labels = self._select_boxes(boxes, boxes_view2,
                                                      labels, instance_ids,
                                                      img_shapes)
        ids = self._contrast_ids(box_labels)
        losses = {}
        for i, (proj, f1,
                f2) in enumerate(zip(self.projectors, feats, feats_view2)):
            r1 = self._roi_features(f1, rois1, input_sizes[0])
            r2 = self._roi_features(f2, rois2, input_sizes[1])
            n = r1.shape[0]
            z = F.normalize(proj(torch.cat([r1, r2])), dim=1)
            z = torch.stack([z[:n], z[n:]], dim=1)  # (M, 2, D), M may be 0
            if self.training:
                self._log_box_similarity(i, z[:, 0].detach())
            losses[f'loss_cds_inst_s{i}'] = (
                self.loss_weights[i] * self.weight_scale *
                self.loss_module(z, ids))
        return losses

    @staticmethod
    def _log_box_similarity(i: int, z: Tensor) -> None:
        """Log the mean cosine over pairs of different boxes, if any.

        Shapes:
            z: (M, D) L2-normalised projections of view 1.
        """
        m = z.shape[0]
        if m < 2:
            return
        z = z.float()
        # sum over i != j of z_i . z_j = |sum_i z_i|^2 - sum_i |z_i|^2
        pairs = z.sum(0).pow(2).sum() - z.pow(2).sum()
        MessageHub.get_current_instance().update_scalar(
            f'train/cds_inst_cos_s{i}',
            float(pairs) / (m * (m - 1)))

    def _check_feats(self, feats: Sequence[Tensor],
                     feats_view2: Sequence[Tensor]) -> None:
        for name, f1, f2, c in zip(self.taps, feats, feats_view2,
                                   self.in_channels):
            for f in (f1, f2):
                if f.dim() != 4 or f.shape[1] != c:
                    raise ValueError(
                        f'tap {name!r} gave a feature of shape '
                        f'{tuple(f.shape)}, but instance_head.in_channels '
                        f'says {c} channels (dim 1)')

    def _select_boxes(
        self,
        boxes: List[Tensor],
        boxes_view2: List[Tensor],
        labels: List[Tensor],
        instance_ids: Optional[Sequence[List[Tensor]]] = None,
        img_shapes: Optional[Sequence[list]] = None
    ) -> Tuple[List[Tensor], List[Tensor], Tensor]:
        """Pairs of the same box to contrast per image, and their labels.

        Shapes:
            return: two lists of N tensors (K_j, 4) fp32, and (sum K_j,).
        """
        n = len(boxes)
        none = ([None] * n, [None] * n)
        ids1, ids2 = none if instance_ids is None else instance_ids
        shapes1, shapes2 = none if img_shapes is None else img_shapes
        rois1, rois2, ids = [], [], []
        for j, (b1, b2, lb) in enumerate(zip(boxes, boxes_view2, labels)):
            if len(lb) != len(b1):
                raise ValueError(
                    f'InstanceCDSHead: image {j} of the batch holds {len(b1)} '
                    f'boxes but {len(lb)} labels in view 1')
            k1, k2 = pair_boxes(b1, b2, ids1[j], ids2[j], shapes1[j],
                                shapes2[j], j)
            limit = self.max_boxes_per_image
            if limit is not None and len(k1) > limit:
                pick = torch.randperm(len(k1))[:limit].sort().values
                k1, k2 = k1[pick.to(k1.device)], k2[pick.to(k2.device)]
            rois1.append(b1[k1.to(b1.device)].float())
            rois2.append(b2[k2.to(b2.device)].float())
            ids.append(lb[k1.to(lb.device)])
        return rois1, rois2, torch.cat(ids)

    def _contrast_ids(self, box_labels: Tensor) -> Optional[Tensor]:
        """The labels for the loss: None (SimCLR) when all boxes share one.

        With a gathering loss the decision is taken over all ranks (one
        all_reduce, joined by every rank), so all ranks take the same one.
        """
        if not self.use_labels:
            return None
        if box_labels.numel():
            low_high = torch.stack([-box_labels.min(), box_labels.max()])
        else:
            low_high = torch.full((2, ), _NO_LABEL, device=box_labels.device)
        low_high = low_high.to(torch.int64)
        if getattr(self.loss_module, 'gather_distributed', False):
            low_high = all_reduce_max(low_high)
        neg_low, high = low_high.tolist()
        if high == _NO_LABEL or high != -neg_low:
            return box_labels  # no box at all, or two labels at least
        if not self._warned_one_label:
            print_log(
                'InstanceCDSHead: every box of a batch has the same label, so '
                'SupCon over box classes would have no negatives; such '
                'batches use SimCLR over boxes (positive: the same box in '
                'the other view). Set instance_head.use_labels=False to use '
                'SimCLR always and silence this warning.',
                logger='current',
                level=logging.WARNING)
            self._warned_one_label = True
        return None

    def _roi_features(self, feat: Tensor, rois: List[Tensor],
                      input_size: Sequence[int]) -> Tensor:
        """RoIAlign on one level: (M, C, roi_size, roi_size), M may be 0.

        The boxes are scaled per axis (feature / input size on x and on y)
        and stay fp32; a half-precision feature is read in fp32 (as
        torchvision's autocast rule for ``roi_align`` does) and the result
        cast back.
        """
        sy = feat.shape[-2] / float(input_size[-2])
        sx = feat.shape[-1] / float(input_size[-1])
        scale = torch.tensor([sx, sy, sx, sy],
                             dtype=torch.float32,
                             device=feat.device)
        rois = [r.float().to(feat.device) * scale for r in rois]
        with torch.autocast(feat.device.type, enabled=False):
            out = roi_align(
                feat.float(),
                rois,
                output_size=self.roi_size,
                spatial_scale=1.0,
                sampling_ratio=2,
                aligned=True)
        return out.to(feat.dtype)
