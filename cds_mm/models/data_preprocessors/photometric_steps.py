"""The per-sample colour transforms' batch counterparts, one per type.

Each step has ``draw(active, num, device, generator)``, which draws every
image's parameters (``active``: (N, ) bool, the images a ``RandomApply``
above let through), and ``apply(img, params)`` on an (N, 3, H, W) float
batch. Used by :class:`BatchPhotometric` only.
"""
import numbers
from typing import Tuple

import torch
from torch import Tensor

from . import pil_ops

_JITTER_OPS = (pil_ops.brightness, pil_ops.contrast, pil_ops.saturation,
               pil_ops.hue)  # mmpretrain ColorJitter's indices 0-3
_SUPPORTED = ('RandomApply', 'ColorJitter', 'RandomGrayscale', 'Solarize',
              'GaussianBlur')


def parse_step(cfg: dict, key: str):
    """One transform config -> its batch step (``key`` names it in errors).
    """
    kind = str(cfg.get('type', '')).split('.')[-1]
    args = {k: v for k, v in cfg.items() if k != 'type'}
    if kind not in _SUPPORTED:
        raise ValueError(f'BatchPhotometric {key}.type must be one of '
                         f'{_SUPPORTED}, got {cfg.get("type")!r}')
    try:
        if kind == 'RandomApply':
            inner = args.pop('transforms')
            inner = inner if isinstance(inner, (list, tuple)) else [inner]
            steps = [
                parse_step(c, f'{key}.transforms[{i}]')
                for i, c in enumerate(inner)
            ]
            return _Group(steps, args.pop('prob', 0.5), **args)
        if kind == 'ColorJitter':
            return _ColorJitter(**args)
        if kind == 'RandomGrayscale':
            return _Grayscale(**args)
        if kind == 'GaussianBlur':
            return _GaussianBlur(**args)
        return _Solarize(**args)
    except TypeError as err:  # an unknown argument
        raise ValueError(f'BatchPhotometric {key}: {err}') from None


def _coin(active: Tensor, prob: float, generator) -> Tensor:
    """``np.random.rand() < prob`` per image, and-ed with ``active``."""
    rand = torch.rand(len(active), device=active.device, generator=generator)
    return active & (rand < prob)


class _Group:
    """mmcv ``RandomApply``: one draw decides the whole group."""

    def __init__(self, steps: list, prob: float):
        if not 0 <= prob <= 1:
            raise ValueError(f'RandomApply prob must be in [0, 1], got {prob}')
        self.steps, self.prob = steps, prob

    def draw(self, active, num, device, generator):
        on = _coin(active, self.prob, generator)
        return [s.draw(on, num, device, generator) for s in self.steps]

    def apply(self, img, params):
        for step, param in zip(self.steps, params):
            img = step.apply(img, param)
        return img


class _ColorJitter:
    """mmpretrain ``ColorJitter`` (pillow backend), per image."""

    def __init__(self,
                 brightness=0.,
                 contrast=0.,
                 saturation=0.,
                 hue=0.,
                 backend: str = 'pillow'):
        if backend != 'pillow':
            raise ValueError("BatchPhotometric reproduces ColorJitter's "
                             f"backend='pillow' only, got {backend!r}")
        hue_range = _span(hue, 'hue', center=0., bound=(-0.5, 0.5))
        scales = dict(
            brightness=brightness, contrast=contrast, saturation=saturation)
        self.ranges = tuple(_span(v, k) for k, v in scales.items())
        self.ranges += (hue_range, )  # in ColorJitter's index order

    def draw(self, active, num, device, generator):
        order = torch.rand(
            num, 4, device=device, generator=generator).argsort(dim=1)
        rand = torch.rand(
            num, 4, dtype=torch.float64, device=device, generator=generator)
        factors = [
            None if span is None else span[0] + (span[1] - span[0]) * u
            for span, u in zip(self.ranges, rand.unbind(1))
        ]  # np.random.uniform(low, high)
        return active, order, factors

    def apply(self, img, params):
        active, order, factors = params
        for k in range(4):
            for j, op in enumerate(_JITTER_OPS):
                if factors[j] is None:
                    continue
                rows = (active & (order[:, k] == j)).nonzero()[:, 0]
                if len(rows):
                    img[rows] = op(img[rows], factors[j][rows])
        return img


def _span(value,
          name: str,
          center: float = 1.,
          bound: Tuple[float, float] = (0., float('inf'))):
    """mmpretrain ``ColorJitter._set_range``: None when it does nothing."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f'ColorJitter {name} must be >= 0, got {value}')
        value = (center - float(value), center + float(value))
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f'ColorJitter {name} must be a number or a (min, '
                         f'max) pair, got {value!r}')
    low, high = (min(max(float(v), bound[0]), bound[1]) for v in value)
    if low > high:
        raise ValueError(f'ColorJitter {name} range is empty: {value!r}')
    return None if low == high == center else (low, high)


class _Grayscale:
    """mmcv ``RandomGrayscale`` (mmpretrain's) with ``keep_channels=True``.

    Every channel becomes the weighted mean of the channels (the weights
    normalised to sum 1; the default (1, 1, 1) is the plain mean), cast to
    uint8 by truncation, as mmcv computes it.
    """

    def __init__(self,
                 prob: float = 0.1,
                 keep_channels: bool = False,
                 channel_weights=(1., 1., 1.),
                 color_format: str = 'bgr'):
        if not keep_channels:
            raise ValueError('BatchPhotometric needs RandomGrayscale('
                             'keep_channels=True): a batch keeps 3 channels')
        if color_format not in ('bgr', 'rgb'):
            raise ValueError("RandomGrayscale color_format must be 'bgr' or "
                             f"'rgb' here, got {color_format!r}")
        if len(channel_weights) != 3:
            raise ValueError('RandomGrayscale channel_weights must have 3 '
                             f'values, got {channel_weights!r}')
        weights = torch.tensor(channel_weights, dtype=torch.float64)
        self.weights = weights / float(sum(channel_weights))
        self.prob = prob

    def draw(self, active, num, device, generator):
        return _coin(active, self.prob, generator)

    def apply(self, img, on):
        rows = on.nonzero()[:, 0]
        if len(rows):
            img[rows] = pil_ops.weighted_gray(img[rows], self.weights)
        return img


class _Solarize:
    """mmpretrain ``Solarize``: ``255 - x`` where ``x >= thr``."""

    def __init__(self, thr: float, prob: float = 0.5):
        self.thr, self.prob = thr, prob

    def draw(self, active, num, device, generator):
        return _coin(active, self.prob, generator)

    def apply(self, img, on):
        flip = on.view(-1, 1, 1, 1) & (img >= self.thr)
        return torch.where(flip, 255 - img, img)


class _GaussianBlur:
    """mmpretrain ``GaussianBlur``: Pillow's blur, radius drawn per image."""

    def __init__(self,
                 radius=None,
                 prob: float = 0.5,
                 magnitude_range=None,
                 magnitude_level: float = 10,
                 magnitude_std=0.,
                 total_level: float = 10):
        if (radius is None) == (magnitude_range is None):
            raise ValueError('GaussianBlur needs exactly one of radius and '
                             f'magnitude_range, got {radius!r} and '
                             f'{magnitude_range!r}')
        if not (magnitude_std == 'inf'
                or isinstance(magnitude_std, numbers.Number)):
            raise ValueError("GaussianBlur magnitude_std must be a number or "
                             f"'inf', got {magnitude_std!r}")
        self.radius, self.prob = radius, prob
        self.range, self.level = magnitude_range, magnitude_level
        self.std, self.total = magnitude_std, total_level

    def draw(self, active, num, device, generator):
        on = _coin(active, self.prob, generator)
        f64 = dict(dtype=torch.float64, device=device)
        if self.radius is not None:
            return on, torch.full((num, ), float(self.radius), **f64)
        level = torch.full((num, ), float(self.level), **f64)
        if self.std == 'inf':  # np.random.uniform(0, level)
            level = level * torch.rand(num, generator=generator, **f64)
        elif self.std > 0:
            noise = torch.randn(num, generator=generator, **f64)
            level = (level + self.std * noise).clamp(0, self.total)
        low, high = self.range
        return on, level / self.total * (high - low) + low

    def apply(self, img, params):
        on, radius = params
        rows = (on & (radius != 0)).nonzero()[:, 0]  # radius 0: a copy
        if len(rows):
            img[rows] = pil_ops.gaussian_blur(img[rows], radius[rows])
        return img
