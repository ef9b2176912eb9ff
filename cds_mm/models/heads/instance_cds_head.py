"""Instance-level CDS: contrast RoI features of the same box in two views."""
import copy
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor
from torchvision.ops import roi_align

from .cds_head import build_projectors


@MODELS.register_module()
class InstanceCDSHead(BaseModule):
    """SupCon between the RoI features of ground-truth boxes in two views.

    Each box is RoIAligned on every tapped level in view 1 and in view 2 (its
    own box there: the pipeline keeps boxes in the same order in both views),
    projected, L2-normalised and contrasted with the box class labels. Images
    whose two views hold different box counts (a transform dropped a box)
    and images without boxes contribute nothing; a batch without any box gives
    a zero loss that still touches every parameter (DDP needs that).

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
        use_labels (bool): SupCon over box classes (True) or SimCLR over boxes
            (False). Defaults to True.
        init_cfg (dict, optional): Initialisation config. Defaults to None.

    Shapes:
        feats, feats_view2: list of (N, C_i, H_i, W_i), one per tap.
        boxes, boxes_view2: list of N tensors (M_j, 4), x1y1x2y2 in input pixels.
        labels: list of N tensors (M_j,) int64.
        input_sizes: (H, W) of the (padded) batch input of view 1 and view 2.
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
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.taps = list(taps)
        if in_channels is None or len(in_channels) != len(self.taps):
            raise ValueError(
                f'instance_head.in_channels must give one int per tap '
                f'{self.taps}, got {in_channels}')
        weights = [loss_weight] * len(self.taps) if isinstance(
            loss_weight, (int, float)) else list(loss_weight)
        if len(weights) != len(self.taps):
            raise ValueError(f'instance_head.loss_weight has {len(weights)} '
                             f'entries for {len(self.taps)} taps')
        if roi_size < 1:
            raise ValueError(f'instance_head.roi_size must be >= 1, got {roi_size}')
        self.in_channels = list(in_channels)
        self.loss_weights = [float(w) for w in weights]
        self.roi_size = roi_size
        self.use_labels = use_labels
        self.weight_scale = 1.0
        self.projectors = build_projectors(copy.deepcopy(projector),
                                           self.in_channels,
                                           'instance_head.projector')
        self.loss_module = MODELS.build(loss)

    def set_weight_scale(self, scale: float) -> None:
        """Multiply every tap's weight by ``scale`` (set by CDSWeightHook)."""
        self.weight_scale = float(scale)

    def loss(self, feats: Sequence[Tensor], feats_view2: Sequence[Tensor],
             boxes: List[Tensor], boxes_view2: List[Tensor],
             labels: List[Tensor],
             input_sizes: Sequence[Sequence[int]]) -> Dict[str, Tensor]:
        """``{'loss_cds_inst_s<i>': ()}`` per tap."""
        for name, f1, f2, c in zip(self.taps, feats, feats_view2, self.in_channels):
            for f in (f1, f2):
                if f.dim() != 4 or f.shape[1] != c:
                    raise ValueError(
                        f'tap {name!r} gave a feature of shape {tuple(f.shape)}, '
                        f'but instance_head.in_channels says {c} channels (dim 1)')
        keep = [len(b1) == len(b2) and len(b1) > 0
                for b1, b2 in zip(boxes, boxes_view2)]
        rois1 = [b.float() if k else b.new_zeros(0, 4)
                 for b, k in zip(boxes, keep)]
        rois2 = [b.float() if k else b.new_zeros(0, 4)
                 for b, k in zip(boxes_view2, keep)]
        ids = [lb for lb, k in zip(labels, keep) if k]
        box_labels = torch.cat(ids) if ids else None
        losses = {}
        for i, (proj, f1, f2) in enumerate(zip(self.projectors, feats,
                                                feats_view2)):
            if box_labels is None:
                # nothing to contrast: a zero that keeps every parameter used
                zero = sum(p.sum() for p in proj.parameters()) * 0.0
                losses[f'loss_cds_inst_s{i}'] = zero + f1.sum() * 0.0
                continue
            r1 = self._roi_features(f1, rois1, input_sizes[0])
            r2 = self._roi_features(f2, rois2, input_sizes[1])
            n = r1.shape[0]
            z = F.normalize(proj(torch.cat([r1, r2])), dim=1)
            z = torch.stack([z[:n], z[n:]], dim=1)  # (M, 2, D)
            loss = self.loss_module(z, box_labels if self.use_labels else None)
            losses[f'loss_cds_inst_s{i}'] = (
                self.loss_weights[i] * self.weight_scale * loss)
        return losses

    def _roi_features(self, feat: Tensor, rois: List[Tensor],
                      input_size: Sequence[int]) -> Tensor:
        """RoIAlign on one level: (M, C, roi_size, roi_size)."""
        scale = feat.shape[-1] / float(input_size[-1])
        return roi_align(feat, [r.to(feat.dtype) for r in rois],
                         output_size=self.roi_size, spatial_scale=scale,
                         sampling_ratio=2, aligned=True)
