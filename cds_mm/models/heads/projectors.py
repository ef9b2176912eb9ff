"""Projection heads for CDS: the authors' SepConv stack and a SimCLR-style MLP.

Both map an intermediate feature map to one vector per sample and stop there:
the CDS head L2-normalises. Both are registered in the mmengine root ``MODELS``
registry, so the ``mmdet`` and ``mmpretrain`` scopes find them.
"""
import logging
import math
from typing import List, Optional, Sequence, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.joint_views import cat_views, forward_views

_syncbn_warned = False


def _norm_cfg(norm_cfg: dict, one_d: bool = False) -> dict:
    """Copy of ``norm_cfg`` that can be built here.

    'SyncBN' becomes 'BN' when torch.distributed is not initialised (warned
    once); with ``one_d`` 'BN'/'BN2d' becomes 'BN1d' for (N, C) inputs.
    """
    global _syncbn_warned
    cfg = dict(norm_cfg)
    if cfg.get('type') == 'SyncBN' and not (dist.is_available()
                                            and dist.is_initialized()):
        if not _syncbn_warned:
            print_log(
                "Projector norm_cfg type 'SyncBN' needs an initialised "
                "torch.distributed "
                "process group; using 'BN' on this single process. Set "
                "norm_cfg=dict(type='BN') in the projector config to silence "
                "this.",
                logger='current',
                level=logging.WARNING)
            _syncbn_warned = True
        cfg['type'] = 'BN'
    if one_d and cfg.get('type') in ('BN', 'BN2d'):
        cfg['type'] = 'BN1d'
    return cfg


def _hidden_norm(norm: nn.Module, x: Tensor) -> Tensor:
    """Apply the MLP's hidden norm to (N, C) ``x``, also for N = 1 in training.

    A plain BatchNorm (not SyncBN) in training mode that gets a batch of 1
    normalises with its running statistics and leaves them untouched, where
    torch would raise. SyncBN under torch.distributed is called as is: every
    rank must join its all-reduce.
    """
    if (isinstance(norm, _BatchNorm)
            and not isinstance(norm, nn.SyncBatchNorm) and norm.training
            and norm.running_mean is not None and x.size(0) == 1):
        return F.batch_norm(x, norm.running_mean, norm.running_var,
                            norm.weight, norm.bias, False, 0.0, norm.eps)
    return norm(x)


def _sep_conv(in_channels: int, out_channels: int,
              norm_cfg: dict) -> nn.Sequential:
    """One SepConv block of the authors' code; halves H and W."""
    c = in_channels
    return nn.Sequential(
        nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        build_norm_layer(norm_cfg, c)[1], nn.ReLU(inplace=True),
        nn.Conv2d(c, c, 3, stride=1, padding=1, groups=c, bias=False),
        nn.Conv2d(c, out_channels, 1, bias=False),
        build_norm_layer(norm_cfg, out_channels)[1], nn.ReLU(inplace=True))


def _block_views(
        block: nn.Sequential,
        x: Union[Tensor, List[Tensor]]) -> Union[Tensor, List[Tensor]]:
    """One SepConv block on joined views, or on views still apart."""
    return block(x) if isinstance(x, Tensor) else forward_views(
        block, x, channels_last=True)


@MODELS.register_module()
class SepConvProjector(BaseModule):
    """The authors' projection head: a stack of SepConv blocks, then global
    average pooling.

    Each block is DWConv3x3 s2 -> Conv1x1 (C_in -> C_in) -> norm -> ReLU ->
    DWConv3x3 s1 -> Conv1x1 (C_in -> C_out) -> norm -> ReLU, without biases.
    Widths grow geometrically from ``in_channels`` to ``out_channels``; for
    ResNet they double each block (64 -> 128 -> 256 -> 512), and the last stage
    (``in_channels == out_channels``) gets pooling only. The output is not
    normalised.

    Args:
        in_channels (int): Channels of the input feature map.
        out_channels (int): Channels of the output vector.
        num_blocks (int, optional): Number of SepConv blocks. Defaults to None:
            ``round(log2(out_channels / in_channels))`` clipped at 0, raised to
            1 when the widths differ (a block is needed to change them).
        norm_cfg (dict): Norm layer config for ``mmcv.cnn.build_norm_layer``;
            'SyncBN' falls back to 'BN' outside torch.distributed. Defaults to
            dict(type='BN').
        with_cp (bool): Checkpoint each block (as ``with_cp`` of mmdet's
            ResNet): its activations are recomputed in backward instead of
            kept, which trades the heads' share of the training memory for
            a second forward pass of the blocks. Losses and gradients are
            unchanged; the norms' running statistics, which nothing reads
            (the heads are training-only), update twice per step. Defaults to
            False.
        init_cfg (dict or list[dict], optional): Initialisation config.
            Defaults to None.

    Shapes:
        x: (N, in_channels, H, W); also (N, in_channels) when there are no
            blocks, returned as is.
        return: (N, out_channels). Before pooling H and W are halved once per
            block.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 num_blocks: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f'in_channels and out_channels must be >= 1, got '
                f'in_channels={in_channels}, out_channels={out_channels}')
        if num_blocks is None:
            num_blocks = max(
                math.floor(math.log2(out_channels / in_channels) + 0.5), 0)
            num_blocks = max(num_blocks, int(in_channels != out_channels))
        elif num_blocks < 0:
            raise ValueError(
                f'num_blocks must be >= 0 or None, got {num_blocks}')
        elif num_blocks == 0 and in_channels != out_channels:
            raise ValueError(
                'num_blocks=0 leaves no block to map '
                f'in_channels={in_channels} '
                f'to out_channels={out_channels}; make them equal or use '
                'blocks')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_blocks = num_blocks
        self.with_cp = with_cp
        ratio = out_channels / in_channels
        self.channels = tuple([
            round(in_channels * ratio**(i / num_blocks))
            for i in range(num_blocks)
        ] + [out_channels])
        cfg = _norm_cfg(norm_cfg)
        self.blocks = nn.ModuleList(
            _sep_conv(cin, cout, cfg)
            for cin, cout in zip(self.channels, self.channels[1:]))

    def forward(self, x: Tensor) -> Tensor:
        """Project ``x`` to (N, out_channels); see the class docstring."""
        return self.forward_views([x])

    def forward_views(self, views: Sequence[Tensor]) -> Tensor:
        """Project several views as one batch: the norms see all of them.

        Equals ``forward(torch.cat(views))`` up to float rounding when the
        views have one shape, without that copy: each view runs alone up to
        the first norm (see :func:`forward_views`). Views of different
        sizes (e.g. view 2 at a lower resolution) share the norms'
        statistics too.

        Shapes:
            views: list of (N_v, in_channels, H_v, W_v), or of
                (N_v, in_channels) when there are no blocks.
            return: (sum N_v, out_channels), rows in the order of ``views``.
        """
        if self.num_blocks == 0 and all(
                x.dim() == 2 and x.size(1) == self.in_channels for x in views):
            return cat_views(views)
        for x in views:
            self._check_input(x)
        x = list(views)
        for block in self.blocks:
            if self.with_cp and torch.is_grad_enabled():
                x = cp.checkpoint(_block_views, block, x, use_reentrant=False)
            else:
                x = _block_views(block, x)
        if isinstance(x, Tensor):
            return x.mean(dim=(2, 3))
        return torch.cat([v.mean(dim=(2, 3)) for v in x])

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            also = (f' or (N, {self.in_channels})'
                    if self.num_blocks == 0 else '')
            raise ValueError(f'x must be (N, {self.in_channels}, H, W){also}, '
                             f'got {tuple(x.shape)}')


@MODELS.register_module()
class MLPProjector(BaseModule):
    """SimCLR-style projection head, optionally after 3x3 convs ("conv +
    pooling + MLP").

    ``num_convs`` x (Conv3x3 -> norm -> ReLU), global average pooling of 4-D
    inputs, then Linear(C, hid) -> norm (1-D) -> ReLU -> Linear(hid, out). The
    output is not normalised. A batch of 1 in training normalises the hidden
    layer with its running statistics (BatchNorm raises there; SyncBN under
    torch.distributed is left alone); an empty batch returns (0, out_channels).

    Args:
        in_channels (int): Channels of the input.
        hid_channels (int): Width of the hidden layer. Defaults to 512.
        out_channels (int): Channels of the output vector. Defaults to 128.
        num_convs (int): Number of 3x3 conv blocks before pooling (e.g. 1 on
            FPN levels). Defaults to 0.
        conv_channels (int, optional): Output channels of the conv blocks; only
            with ``num_convs > 0``. Defaults to None (= in_channels).
        norm_cfg (dict, optional): Norm config for the conv blocks and the
            hidden layer ('BN' becomes BatchNorm1d there; 'SyncBN' falls back
            to 'BN' outside torch.distributed).
            None: no norm, and the layers it would follow get biases. Defaults
                to dict(type='BN').
        init_cfg (dict or list[dict], optional): Initialisation config.
            Defaults to None.

    Shapes:
        x: (N, in_channels, H, W), or (N, in_channels) when ``num_convs == 0``;
            N may be 0.
        return: (N, out_channels).
    """

    def __init__(self,
                 in_channels: int,
                 hid_channels: int = 512,
                 out_channels: int = 128,
                 num_convs: int = 0,
                 conv_channels: Optional[int] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        widths = dict(
            in_channels=in_channels,
            hid_channels=hid_channels,
            out_channels=out_channels)
        if conv_channels is not None:
            widths['conv_channels'] = conv_channels
        bad = {k: v for k, v in widths.items() if v < 1}
        if bad:
            raise ValueError(f'channels must be >= 1, got {bad}')
        if num_convs < 0:
            raise ValueError(f'num_convs must be >= 0, got {num_convs}')
        if conv_channels is not None and num_convs == 0:
            raise ValueError(
                f'conv_channels={conv_channels} needs num_convs > 0, got 0')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_convs = num_convs
        bias = norm_cfg is None
        convs, c = [], in_channels
        for _ in range(num_convs):
            cout = in_channels if conv_channels is None else conv_channels
            convs += [nn.Conv2d(c, cout, 3, padding=1, bias=bias)]
            convs += [] if bias else [
                build_norm_layer(_norm_cfg(norm_cfg), cout)[1]
            ]
            convs += [nn.ReLU(inplace=True)]
            c = cout
        self.convs = nn.Sequential(*convs)
        self.fc0 = nn.Linear(c, hid_channels, bias=bias)
        self.norm = nn.Identity() if bias else build_norm_layer(
            _norm_cfg(norm_cfg, one_d=True), hid_channels)[1]
        self.act = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(hid_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Project ``x`` to (N, out_channels); see the class docstring."""
        return self.forward_views([x])

    def forward_views(self, views: Sequence[Tensor]) -> Tensor:
        """Project several views as one batch: the norms see all of them.

        Equals ``forward(torch.cat(views))`` up to float rounding when the
        views have one shape, without copying the inputs: each view runs
        alone up to the first norm (see :func:`forward_views`).

        Shapes:
            views: list of (N_v, in_channels, H_v, W_v), or of
                (N_v, in_channels) when ``num_convs == 0``.
            return: (sum N_v, out_channels), rows in the order of ``views``.
        """
        for x in views:
            ok_2d = x.dim() == 2 and self.num_convs == 0
            if not (x.dim() == 4 or ok_2d) or x.size(1) != self.in_channels:
                also = (f' or (N, {self.in_channels})'
                        if self.num_convs == 0 else '')
                raise ValueError(
                    f'x must be (N, {self.in_channels}, H, W){also}, '
                    f'got {tuple(x.shape)}')
        x = list(views)
        if x[0].dim() == 4:
            x = forward_views(self.convs, x)
            x = x.mean(dim=(2, 3)) if isinstance(x, Tensor) else cat_views(
                [v.mean(dim=(2, 3)) for v in x])
        else:
            x = cat_views(x)
        return self.fc1(self.act(_hidden_norm(self.norm, self.fc0(x))))
