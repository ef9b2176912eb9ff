"""BatchPhotometric against the per-sample mmcv / mmpretrain transforms.

Two claims: each image comes out as the per-sample pipeline makes it with the
same parameters (pixel for pixel), and the per-image parameters are drawn
independently from the distributions that the per-sample transforms draw
from (ranges, apply rates, the order of the jitter steps).
"""
import os.path as osp
import random

import numpy as np
import pytest
import torch
from cds_test_utils import REPO_ROOT
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.registry import MODELS

import cds_mm  # noqa: F401
from cds_mm.models.data_preprocessors import BatchPhotometric

RECIPE = Config.fromfile(
    osp.join(REPO_ROOT, 'configs/_base_/cds/contrast_colour.py'))
# every step fires and every jitter range is wide, down to hue +-0.5
STRONG = [
    dict(
        type='RandomApply',
        prob=1.0,
        transforms=[
            dict(
                type='mmpretrain.ColorJitter',
                brightness=0.9,
                contrast=0.9,
                saturation=0.9,
                hue=0.5)
        ]),
    dict(type='mmpretrain.RandomGrayscale', prob=0.5, keep_channels=True),
    dict(type='mmpretrain.Solarize', thr=128, prob=0.5),
    dict(
        type='mmpretrain.GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.5),
]


def _images(n, size=24, seed=0):
    """(N, 3, S, S) uint8: random colours, flat patches and grey pixels."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(
        0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    img[:, :, :4, :4] = torch.randint(
        0, 256, (n, 1, 1, 1), generator=g, dtype=torch.uint8)  # grey corner
    img[:, :, -4:, -4:] = torch.randint(
        0, 256, (n, 3, 1, 1), generator=g, dtype=torch.uint8)  # flat colour
    return img


def _per_sample(cfgs, img_chw, param_list):
    """Run the mmcv/mmpretrain pipeline on one image with given params."""
    pipeline = Compose([_scoped(c) for c in cfgs])
    _force(pipeline.transforms, param_list)
    out = pipeline(dict(img=img_chw.permute(1, 2, 0).numpy().copy()))
    return torch.from_numpy(np.ascontiguousarray(out['img'])).permute(2, 0, 1)


def _scoped(cfg):
    cfg = dict(cfg)
    if cfg['type'] == 'RandomApply':
        cfg['transforms'] = [_scoped(c) for c in cfg['transforms']]
    elif '.' not in cfg['type']:
        cfg['type'] = 'mmpretrain.' + cfg['type']
    return cfg


def _force(transforms, params):
    """Replace each transform's random draw by one image's parameters."""
    for t, p in zip(transforms, params):
        name = type(t).__name__
        if name == 'RandomApply':
            t.random_apply = lambda p=p: bool(p[0][0])
            _force(t.transforms.transforms, p)
        elif name == 'ColorJitter':
            on, order, factors = p
            values = [None if f is None else float(f) for f in factors]
            t._rand_params = lambda o=order, v=values: (o.numpy(), *v)
        elif name == 'RandomGrayscale':  # applies when random() < prob
            t._random_prob = lambda p=p: 0. if bool(p) else 1.
        elif name == 'Solarize':  # random_disable() is ``rand > prob``
            t.random_disable = lambda p=p: not bool(p)
        else:  # GaussianBlur
            on, radius = p
            t.random_disable = lambda on=on: not bool(on)
            t.random_magnitude = lambda r=radius: float(r)


def _row(params, i):
    if isinstance(params, torch.Tensor):
        return params[i]
    if isinstance(params, (list, tuple)):
        return type(params)(_row(p, i) for p in params)
    return params


@pytest.mark.parametrize(
    'cfgs,n', [(RECIPE.contrast_colour, 24), (STRONG, 24)],
    ids=['recipe', 'strong'])
def test_each_image_equals_the_per_sample_transforms(cfgs, n):
    aug = MODELS.build(dict(type='BatchPhotometric', transforms=cfgs))
    img = _images(n)
    params = aug.draw(n, generator=torch.Generator().manual_seed(1))
    out = aug.transform(img.float(), params)
    assert out.dtype == torch.float32 and out.shape == img.shape
    changed = 0
    for i in range(n):
        want = _per_sample(cfgs, img[i], _row(params, i))
        assert torch.equal(out[i], want.float()), f'image {i}'
        changed += not torch.equal(want, img[i])
    assert changed >= n // 2  # the comparison saw the transforms act


def test_hue_and_colour_ops_match_pillow_on_many_colours():
    """Every jitter op alone, on 4096 colours (greys included), with shifts
    of both signs and at the range ends."""
    import mmcv
    rgb = _images(1, size=64, seed=3)
    rgb[0, :, 0, :] = torch.arange(64).mul(4).to(torch.uint8)  # greys
    ops = dict(
        hue=(mmcv.adjust_hue, [-0.5, -0.1, -0.003, 0.002, 0.07, 0.5]),
        brightness=(mmcv.adjust_brightness, [0.0, 0.6, 1.37, 2.0]),
        contrast=(mmcv.adjust_contrast, [0.0, 0.61, 1.4, 3.0]),
        saturation=(mmcv.adjust_color, [0.0, 0.6, 1.4, 2.5]))
    hwc = rgb[0].permute(1, 2, 0).numpy().copy()
    from cds_mm.models.data_preprocessors import pil_ops
    for name, (ref, factors) in ops.items():
        for f in factors:
            want = torch.from_numpy(ref(hwc, f, backend='pillow').copy())
            got = getattr(pil_ops, name)(rgb.float(), torch.tensor([f]))
            assert torch.equal(got[0], want.permute(2, 0, 1).float()), \
                f'{name} {f}'


@pytest.mark.parametrize('size', [(20, 24), (3, 2)])
def test_gaussian_blur_matches_pillow(size):
    """Pillow's 3-pass box blur, also on images narrower than the box."""
    from PIL import Image, ImageFilter

    from cds_mm.models.data_preprocessors import pil_ops
    radii = [0.1, 0.7, 1.0, 1.9, 2.0, 4.3]
    img = _images(len(radii), size=max(size), seed=4)[..., :size[0], :size[1]]
    got = pil_ops.gaussian_blur(img.float(), torch.tensor(radii))
    for i, r in enumerate(radii):
        pil = Image.fromarray(img[i].permute(1, 2, 0).numpy().copy())
        want = np.array(pil.filter(ImageFilter.GaussianBlur(radius=r)))
        assert torch.equal(got[i],
                           torch.from_numpy(want).permute(2, 0, 1).float()), r


def _per_sample_draws(n, seed=0):
    """The recipe's per-sample draws, from the mmpretrain transforms."""
    from mmpretrain.registry import TRANSFORMS
    jitter_cfg, gray_cfg = RECIPE.contrast_colour
    group = TRANSFORMS.build(_scoped(jitter_cfg))
    jitter = group.transforms.transforms[0]
    gray = TRANSFORMS.build(_scoped(gray_cfg))
    np.random.seed(seed)
    random.seed(seed)  # RandomGrayscale draws from python's random
    applied, orders, factors, grays = [], [], [], []
    for _ in range(n):
        applied.append(group.random_apply())
        order, *values = jitter._rand_params()
        orders.append(order)
        factors.append(values)
        grays.append(gray._random_prob() < gray.prob)
    return (np.array(applied), np.array(orders), np.array(factors, float),
            np.array(grays))


def _ks(a, b):
    """Two-sample Kolmogorov-Smirnov distance."""
    grid = np.sort(np.concatenate([a, b]))
    cdf = [
        np.searchsorted(np.sort(x), grid, side='right') / len(x)
        for x in (a, b)
    ]
    return np.abs(cdf[0] - cdf[1]).max()


def test_per_image_parameters_are_independent_and_cover_the_same_ranges():
    n = 20000
    aug = BatchPhotometric(RECIPE.contrast_colour)
    (jitter, ), gray = aug.draw(n, generator=torch.Generator().manual_seed(0))
    applied, order, factors = jitter
    factors = np.stack([f.numpy() for f in factors], 1)  # (N, 4)
    ref_applied, ref_order, ref_factors, ref_gray = _per_sample_draws(n)
    sigma = lambda p: 4 * np.sqrt(p * (1 - p) / n)  # noqa: E731

    # apply rates: RandomApply 0.8, RandomGrayscale 0.2, as per sample
    for got, ref, p in ((applied, ref_applied, 0.8), (gray, ref_gray, 0.2)):
        assert abs(got.float().mean().item() - p) < sigma(p)
        assert abs(ref.mean() - p) < sigma(p)
    # factors: same ranges (covered to the ends) and same distribution
    for j, (lo, hi) in enumerate([(0.6, 1.4)] * 3 + [(-0.1, 0.1)]):
        got, ref = factors[:, j], ref_factors[:, j]
        assert lo <= got.min() < lo + 0.002 * (hi - lo)
        assert hi - 0.002 * (hi - lo) < got.max() <= hi
        assert _ks(got, ref) < 0.025, j
    # the jitter order: each of the 24 permutations about equally often
    codes = (order.numpy() * np.array([64, 16, 4, 1])).sum(1)
    ref_codes = (ref_order * np.array([64, 16, 4, 1])).sum(1)
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 24 and set(codes) == set(ref_codes)
    assert np.abs(counts / n - 1 / 24).max() < sigma(1 / 24)
    # independence: between images, between factors, between steps
    assert len(np.unique(factors[:, 0])) > 0.99 * n  # a draw per image
    corr = np.corrcoef(
        np.stack([factors[:-1, 0], factors[1:, 0], factors[:-1, 1]]))
    assert np.abs(corr[0, 1]) < 0.03 and np.abs(corr[0, 2]) < 0.03
    both = (applied & gray).float().mean().item()
    assert abs(both - 0.8 * 0.2) < sigma(0.16)

    # GaussianBlur's radius and rate, against mmpretrain's draws
    from mmpretrain.registry import TRANSFORMS
    blur = TRANSFORMS.build(_scoped(STRONG[-1]))
    np.random.seed(1)
    ref = np.array([blur.random_magnitude() for _ in range(n)])
    on, radius = BatchPhotometric(STRONG[-1:]).draw(
        n, generator=torch.Generator().manual_seed(2))[0]
    assert abs(on.float().mean().item() - 0.5) < sigma(0.5)
    assert 0.1 <= radius.min() < 0.11 and 1.99 < radius.max() <= 2.0
    assert _ks(radius.numpy(), ref) < 0.025


def test_list_inputs_use_each_image_own_parameters():
    """Images of different sizes (pseudo_collate, detection) keep their own
    parameters and come back in their order."""
    aug = BatchPhotometric(STRONG)
    imgs = [_images(1, size=s, seed=s)[0] for s in (16, 24, 16)]
    out = aug(imgs, generator=torch.Generator().manual_seed(5))
    params = aug.draw(3, generator=torch.Generator().manual_seed(5))
    for i, img in enumerate(imgs):
        want = aug.transform(img[None].float(), _row(params, slice(i, i + 1)))
        assert torch.equal(out[i], want[0]), i
    batch = torch.stack([imgs[0], imgs[2]])
    assert aug(batch).shape == (2, 3, 16, 16)


@pytest.mark.parametrize('cfg,key', [
    (dict(type='RandomFlip', prob=0.5), 'transforms[1].type'),
    (dict(type='ColorJitter', backend='cv2'), "backend='pillow'"),
    (dict(type='RandomGrayscale', prob=0.2), 'keep_channels=True'),
    (dict(type='ColorJitter', gamma=0.2), 'transforms[1]'),
    (dict(type='RandomApply', prob=2., transforms=[]), 'prob'),
])
def test_bad_configs_name_the_key(cfg, key):
    with pytest.raises(
            ValueError, match=key.replace('[', r'\[').replace(']', r'\]')):
        BatchPhotometric([dict(type='Solarize', thr=128), cfg])


def test_bad_inputs_say_what_is_expected():
    aug = BatchPhotometric(RECIPE.contrast_colour)
    with pytest.raises(ValueError, match='3 channels'):
        aug(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match='non-empty'):
        BatchPhotometric([])
