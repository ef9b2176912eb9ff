"""The contrastive view's colour transforms, run on a batch on its device."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from torch import Tensor

from .photometric_steps import parse_step


@MODELS.register_module()
class BatchPhotometric(nn.Module):
    """Per-sample colour transforms of the train pipeline, run on a batch.

    Takes the very transform configs that a view's pipeline would run per
    sample in the data loader (e.g. ``configs/_base_/cds/contrast_colour.py``)
    and applies them to the collated batch on the model's device, before
    normalisation, with parameters drawn independently for every image from
    the same distributions. Each image comes out as the per-sample transform
    would make it with the same parameters, pixel for pixel:

    - ``RandomApply(prob, transforms)`` (mmcv): one draw per image for the
      whole group.
    - ``ColorJitter`` (mmpretrain, ``backend='pillow'``, its default):
      brightness, contrast, saturation and hue factors uniform in the same
      ranges, in a uniformly random order per image, with Pillow's uint8
      rounding after each step.
    - ``RandomGrayscale`` (mmcv's, which mmpretrain registers): ``prob``,
      ``keep_channels=True``, ``channel_weights``, ``color_format`` 'bgr' or
      'rgb'.
    - ``Solarize`` (mmpretrain): ``thr``, ``prob``.
    - ``GaussianBlur`` (mmpretrain): a fixed ``radius`` or a
      ``magnitude_range`` with ``magnitude_std`` (0, > 0 or ``'inf'``),
      ``prob``; Pillow's 3-pass box approximation, reproduced exactly.

    Parameters come from torch's generator of the batch's device (seeded by
    mmengine's ``randomness``), not from numpy in the loader processes: the
    same distribution, another stream. Under distributed training with
    ``randomness.diff_rank_seed=False`` every rank draws the same parameters
    for its own images.

    Args:
        transforms (list[dict]): The pipeline steps to run, in order, as
            written for the loader (a scope prefix such as ``mmpretrain.`` is
            ignored).

    Shapes:
        inputs: (N, 3, H, W) tensor, or a list of N (3, H_i, W_i) tensors,
            uint8 or float with integer values in [0, 255], channels in the
            pipeline's order (BGR for mmcv-loaded images).
        return: float32 tensor(s) of the same shapes, on the inputs' device.
    """

    def __init__(self, transforms: Sequence[dict]):
        super().__init__()
        if not isinstance(transforms, (list, tuple)) or not transforms:
            raise ValueError('BatchPhotometric.transforms must be a non-empty '
                             f'list of transform configs, got {transforms!r}')
        self.steps = [
            parse_step(cfg, f'transforms[{i}]')
            for i, cfg in enumerate(transforms)
        ]

    def draw(self,
             num: int,
             device: Union[str, torch.device] = 'cpu',
             generator: Optional[torch.Generator] = None) -> list:
        """Draw every image's parameters (one entry per step, nested)."""
        on = torch.ones(num, dtype=torch.bool, device=device)
        return [step.draw(on, num, device, generator) for step in self.steps]

    def transform(self, img: Tensor, params: list) -> Tensor:
        """Run the steps on ``img`` (N, 3, H, W) float with drawn params."""
        for step, param in zip(self.steps, params):
            img = step.apply(img, param)
        return img

    def forward(
        self,
        inputs: Union[Tensor, List[Tensor]],
        generator: Optional[torch.Generator] = None
    ) -> Union[Tensor, List[Tensor]]:
        if isinstance(inputs, Tensor):
            _check(inputs, inputs.dim() == 4, '(N, 3, H, W)')
            params = self.draw(len(inputs), inputs.device, generator)
            return self.transform(inputs.float(), params)
        images = list(inputs)
        for img in images:
            _check(img, img.dim() == 3, 'a list of (3, H, W)')
        if not images:
            return images
        params = self.draw(len(images), images[0].device, generator)
        out: List[Optional[Tensor]] = [None] * len(images)
        by_shape: dict = {}
        for i, img in enumerate(images):
            by_shape.setdefault(tuple(img.shape), []).append(i)
        for rows in by_shape.values():
            index = torch.tensor(rows, device=images[0].device)
            batch = torch.stack([images[i] for i in rows]).float()
            batch = self.transform(batch, _select(params, index))
            for i, img in zip(rows, batch):
                out[i] = img
        return out


def _check(img: Tensor, ok: bool, shape: str) -> None:
    if not ok or img.shape[-3] != 3:
        raise ValueError(f'BatchPhotometric needs {shape} images with 3 '
                         f'channels, got {tuple(img.shape)}')


def _select(params, index: Tensor):
    """The rows ``index`` of nested per-image parameters."""
    if isinstance(params, Tensor):
        return params[index]
    if isinstance(params, (list, tuple)):
        return type(params)(_select(p, index) for p in params)
    return params
