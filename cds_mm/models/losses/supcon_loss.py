"""Supervised contrastive loss (Khosla et al. 2020); SimCLR / NT-Xent when
labels are None."""
import logging
from typing import Optional

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from ..utils.dist import (gather_labels, gather_sizes, gather_with_grad,
                          get_rank, get_world_size)

SMALL_BATCH_MODES = ('warn', 'raise')


@MODELS.register_module()
class SupConLoss(BaseModule):
    """Supervised contrastive loss over V views; SimCLR/NT-Xent when ``labels``
    is None.

    Follows the authors' SupCon code with ``contrast_mode='all'``: each of the
    V * N rows is an anchor; its positives are the other rows with the same
    label (with ``labels=None``: the other views of the same sample); its
    softmax runs over every other row, itself excluded. The loss is the mean
    over anchors of -mean over positives of that log-softmax, times
    ``temperature / base_temperature``. Anchors without a positive (a singleton
    label with V=1) are left out of the mean; if no anchor has one the result
    is an exact 0 that stays connected to ``features``, so DDP sees every
    parameter used. Computed in fp32, also under autocast.

    With ``gather_distributed=True`` and an initialised process group of world
    size W > 1, the features (and labels) of every rank are gathered with
    gradient: the anchors are the local rows, the contrast set is every row of
    every rank, and the local loss is normalised so that its mean over ranks is
    the loss of one process holding the concatenated batch. As DDP averages
    gradients over ranks, a W-rank step then equals that single-process step.
    Ranks may hold different N, 0 included: every rank joins every gather (row
    counts first, then the padded rows) and every backward, so no rank leaves
    another waiting. A batch without rows (on every rank, when gathering) gives
    an exact 0 connected to ``features`` without a warning.

    ``anchor_mask`` restricts the anchors to some samples (e.g. FSCE's
    proposals with IoU >= 0.8); the other rows stay in every anchor's
    contrast set (and may be positives of it) but get no loss of their own.
    The loss is the mean over the valid anchors only.

    Args:
        temperature (float): Divides the cosine similarities. Defaults to 0.07.
        base_temperature (float, optional): The loss is scaled by temperature /
            base_temperature. Defaults to None (= temperature, scale 1).
        gather_distributed (bool): Contrast against the rows of every rank when
            distributed. Defaults to False (per-rank batch, as in the authors'
            code).
        min_samples (int): Smallest N (the global N when gathering) that gets a
            loss; smaller batches are handled by ``small_batch``. Defaults to
            2.
        small_batch (str): ``'warn'`` logs one warning and returns a zero loss
            connected to ``features``; ``'raise'`` raises ``ValueError``.
            Defaults to ``'warn'``.

    Shapes:
        features: (N, V, D) L2-normalised projections, V >= 1 views per sample.
        labels: (N,) integer class ids, or None (only a sample's own views are
            positives).
        anchor_mask: (N,) bool, or None (every sample is an anchor).
        return: () fp32 scalar, also under autocast.
    """

    def __init__(self,
                 temperature: float = 0.07,
                 base_temperature: Optional[float] = None,
                 gather_distributed: bool = False,
                 min_samples: int = 2,
                 small_batch: str = 'warn') -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if base_temperature is not None and base_temperature <= 0:
            raise ValueError(
                f'base_temperature must be > 0 or None, got {base_temperature}'
            )
        if min_samples < 1:
            raise ValueError(f'min_samples must be >= 1, got {min_samples}')
        if small_batch not in SMALL_BATCH_MODES:
            raise ValueError(
                f'small_batch must be one of {SMALL_BATCH_MODES}, '
                f'got {small_batch!r}')
        self.temperature = temperature
        self.base_temperature = (
            temperature if base_temperature is None else base_temperature)
        self.scale = temperature / self.base_temperature
        self.gather_distributed = gather_distributed
        self.min_samples = min_samples
        self.small_batch = small_batch
        self._warned = False

    def forward(self,
                features: Tensor,
                labels: Optional[Tensor] = None,
                anchor_mask: Optional[Tensor] = None) -> Tensor:
        """Compute the loss.

        Args:
            features (Tensor): L2-normalised projections.
            labels (Tensor, optional): Class ids; None gives SimCLR/NT-Xent.
                Defaults to None.
            anchor_mask (Tensor, optional): Which samples (all their views)
                act as anchors; None: all. Defaults to None.

        Returns:
            Tensor: The scalar loss in fp32.

        Shapes:
            features: (N, V, D).
            labels: (N,) or None.
            anchor_mask: (N,) bool or None.
            return: ().
        """
        if features.dim() != 3:
            raise ValueError('features must have shape (N, V, D), got '
                             f'{tuple(features.shape)}')
        n, v, _ = features.shape
        if labels is not None and tuple(labels.shape) != (n, ):
            raise ValueError(
                f'labels must have shape ({n},) to match features of shape '
                f'{tuple(features.shape)}, got {tuple(labels.shape)}')
        if anchor_mask is not None and tuple(anchor_mask.shape) != (n, ):
            raise ValueError(
                f'anchor_mask must have shape ({n},) to match features of '
                f'shape {tuple(features.shape)}, got '
                f'{tuple(anchor_mask.shape)}')
        world_size = get_world_size() if self.gather_distributed else 1
        with torch.autocast(features.device.type, enabled=False):
            z = features.float()
            if world_size > 1:
                sizes = gather_sizes(z)  # rows of every rank, 0 included
                # (sum N, V, D) in rank order
                z_all = gather_with_grad(z, sizes=sizes)
                offset = sum(sizes[:get_rank()])
            else:
                sizes, z_all, offset = None, z, 0
            n_all = z_all.shape[0]
            if labels is None:
                ids_all = torch.arange(n_all, device=z.device)
            elif world_size > 1:
                ids_all = gather_labels(labels.to(z.device), sizes=sizes)
            else:
                ids_all = labels.to(z.device)
            anchors_all = None
            if anchor_mask is not None:
                anchors_all = anchor_mask.to(z.device, torch.int64)
                if world_size > 1:
                    anchors_all = gather_labels(anchors_all, sizes=sizes)
                anchors_all = anchors_all.bool()
            # nothing anywhere: no warning, nothing to gather back
            if n_all == 0:
                return features.float().sum() * 0.0
            if n_all < self.min_samples:
                return self._small_batch_loss(features, n_all)
            if n_all * v < 2:  # a lone row has nothing to contrast with
                return features.float().sum() * 0.0
            return self._local_loss(z_all, ids_all, offset, n, world_size,
                                    anchors_all)

    def _local_loss(self,
                    z_all: Tensor,
                    ids_all: Tensor,
                    offset: int,
                    n: int,
                    world_size: int,
                    anchors_all: Optional[Tensor] = None) -> Tensor:
        """Loss of the local anchors, normalised by the global number of valid
        anchors.

        Shapes:
            z_all: (N_all, V, D) fp32, rows [offset, offset + n) are local.
            ids_all: (N_all,).
            anchors_all: (N_all,) bool or None (all).
            return: ().
        """
        n_all, v, _ = z_all.shape
        rows = z_all.reshape(n_all * v, -1)  # (V * N_all, D), sample-major
        ids = ids_all.repeat_interleave(v)  # (V * N_all,)
        start, stop = offset * v, (offset + n) * v
        idx = torch.arange(start, stop, device=rows.device)
        if anchors_all is None:
            # anchors with a positive over all ranks: the same on every rank,
            # and no host sync
            valid = (ids[:, None] == ids[None, :]).sum(1) > 1
        else:
            _, inverse, counts = torch.unique(
                ids, return_inverse=True, return_counts=True)
            valid = (counts[inverse] > 1) & anchors_all.repeat_interleave(v)
            idx = idx[valid[start:stop]]  # only anchors enter the logits
        is_self = idx[:, None] == torch.arange(
            n_all * v, device=rows.device)[None, :]
        # (A, V * N_all), A = V * n local anchors at most
        logits = rows[idx] @ rows.t() / self.temperature
        log_p = logits.masked_fill(is_self, float('-inf')).log_softmax(dim=1)
        pos = (ids[idx, None] == ids[None, :]) & ~is_self
        n_pos = pos.sum(dim=1)
        # rows without a positive contribute an exact 0 (where() also blocks
        # the -inf diagonal)
        per_anchor = -torch.where(pos, log_p, log_p.new_zeros(
            ())).sum(1) / n_pos.clamp(min=1)
        n_valid = valid.sum().clamp(min=1)
        return self.scale * world_size * per_anchor.sum() / n_valid

    def _small_batch_loss(self, features: Tensor, batch_size: int) -> Tensor:
        """Apply the ``small_batch`` policy for a batch below ``min_samples``.
        """
        msg = (f'SupConLoss needs at least min_samples={self.min_samples} '
               'samples, got a batch '
               f'of {batch_size}')
        if self.small_batch == 'raise':
            raise ValueError(msg)
        if not self._warned:
            print_log(
                msg + '; returning a zero loss (warned once).',
                logger='current',
                level=logging.WARNING)
            self._warned = True
        return features.float().sum() * 0.0
