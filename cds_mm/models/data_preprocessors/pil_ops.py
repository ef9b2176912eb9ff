"""Pillow's colour operations on a batch tensor, pixel for pixel.

mmpretrain's ``ColorJitter`` (default ``backend='pillow'``) calls mmcv's
``adjust_brightness`` / ``adjust_contrast`` / ``adjust_color`` /
``adjust_hue``, which hand the image to Pillow as RGB (the array's channels
reversed: mmcv images are BGR) and read it back as uint8 after every step.
The functions here redo Pillow's arithmetic on a float batch holding uint8
values, in the same precision (``Image.blend`` in float32, the HSV
conversion with its float32 / float64 steps and its truncations), so each
image comes out equal to the per-sample result. Used by the steps of
:class:`BatchPhotometric` (``photometric_steps.py``) only.

Shapes (all functions):
    img: (N, 3, H, W) float, integer values in [0, 255], channels in the
        pipeline's order (B, G, R for mmcv-loaded images).
    per-image factors: (N, ) float.
    return: same shape and dtype as ``img``, integer values in [0, 255].
"""
import torch
from torch import Tensor


def _per_image(factor: Tensor, img: Tensor) -> Tensor:
    """(N, ) -> (N, 1, 1, 1) float32 on the image's device."""
    return factor.to(img.device, torch.float32).view(-1, 1, 1, 1)


def blend(degenerate: Tensor, img: Tensor, factor: Tensor) -> Tensor:
    """``Image.blend(degenerate, img, factor)``: float32, clip, truncate."""
    d32, i32 = degenerate.float(), img.float()
    out = d32 + _per_image(factor, img) * (i32 - d32)  # no fused FMA
    return out.clamp_(0, 255).trunc_().to(img.dtype)


def luma(img: Tensor) -> Tensor:
    """Pillow's RGB -> L (ITU-R 601-2, 16-bit fixed point).

    Shapes:
        return: (N, 1, H, W), integer values in [0, 255].
    """
    x = img.to(torch.int32)
    red, green, blue = x[:, 2], x[:, 1], x[:, 0]
    gray = (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16
    return gray.unsqueeze(1).to(img.dtype)


def brightness(img: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Brightness(img).enhance(factor)`` per image."""
    return blend(torch.zeros_like(img), img, factor)


def contrast(img: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Contrast``: blend with the rounded mean grey level."""
    gray = luma(img).double()
    mean = (gray.mean(dim=(1, 2, 3)) + 0.5).floor()
    return blend(mean.view(-1, 1, 1, 1).expand_as(img), img, factor)


def saturation(img: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Color``: blend with the image's own L conversion."""
    return blend(luma(img).expand_as(img), img, factor)


def hue(img: Tensor, factor: Tensor) -> Tensor:
    """mmcv ``adjust_hue`` (pillow): RGB -> HSV, ``H += uint8(f * 255)``.

    The shift is ``np.uint8(f * 255)``: truncated towards zero, wrapped
    modulo 256, as numpy casts it on x86-64.
    """
    shift = (factor.double() * 255).trunc().long().remainder(256)
    h, s, v = _rgb_to_hsv(img)
    h = (h + shift.to(img.device).view(-1, 1, 1)).remainder(256)
    return _hsv_to_rgb(h, s, v).to(img.dtype)


def _rgb_to_hsv(img: Tensor):
    """Pillow's ``rgb2hsv_row`` (Convert.c): three (N, H, W) int64 maps."""
    x = img.to(torch.int64)
    red, green, blue = x[:, 2], x[:, 1], x[:, 0]
    maxc = torch.maximum(red, torch.maximum(green, blue))
    minc = torch.minimum(red, torch.minimum(green, blue))
    flat = maxc == minc
    f32 = torch.float32
    span = (maxc - minc).to(f32).masked_fill(flat, 1.0)  # no 0 / 0
    sat = span / maxc.to(f32).clamp(min=1)
    rc = (maxc - red).to(f32) / span
    gc = (maxc - green).to(f32) / span
    bc = (maxc - blue).to(f32) / span
    h = torch.where(
        red == maxc, bc - gc,
        torch.where(green == maxc, (2.0 + rc.double() - bc).to(f32),
                    (4.0 + gc.double() - rc).to(f32)))
    h = torch.fmod(h.double() / 6.0 + 1.0, 1.0).to(f32)  # float h = fmod()
    uh = (h.double() * 255.0).trunc().long().clamp(0, 255)
    us = (sat.double() * 255.0).trunc().long().clamp(0, 255)
    return uh.masked_fill(flat, 0), us.masked_fill(flat, 0), maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """Pillow's ``hsv2rgb`` (Convert.c) on int64 maps: (N, 3, H, W) BGR."""
    f32 = torch.float32
    scaled = h.to(f32).double() * 6.0 / 255.0
    i = scaled.floor()
    frac = (scaled - i.to(f32).double()).to(f32)  # float f
    fs = (s.to(f32).double() / 255.0).to(f32)  # float fs
    vd = v.to(f32).double()

    def _round8(value: Tensor) -> Tensor:  # C round(): half away from 0
        return (value.abs() + 0.5).floor().copysign(value).clamp(0, 255)

    p = _round8(vd * (1.0 - fs.double()))
    q = _round8(vd * (1.0 - (fs * frac).double()))
    t = _round8(vd * (1.0 - fs.double() * (1.0 - frac.double())))
    vd = v.double()
    sector = i.long().remainder(6)
    table = [(vd, t, p), (q, vd, p), (p, vd, t), (p, q, vd), (t, p, vd),
             (vd, p, q)]
    rgb = [torch.zeros_like(vd) for _ in range(3)]
    for k, channels in enumerate(table):
        hit = sector == k
        for c in range(3):
            rgb[c] = torch.where(hit, channels[c], rgb[c])
    grey = s == 0
    rgb = [torch.where(grey, vd, c) for c in rgb]
    return torch.stack(rgb[::-1], dim=1)  # R, G, B -> the array's B, G, R


def weighted_gray(img: Tensor, weights: Tensor) -> Tensor:
    """mmcv ``RandomGrayscale``: float64 weighted sum, truncated to uint8.

    Args:
        weights (Tensor): (3, ) float64, one per channel of ``img``.
    """
    x = img.double()
    w = weights.to(x.device)
    gray = x[:, 0] * w[0] + x[:, 1] * w[1] + x[:, 2] * w[2]  # numpy's order
    return gray.trunc().clamp(0, 255).unsqueeze(1).expand_as(img).to(img.dtype)


def gaussian_blur(img: Tensor, radius: Tensor) -> Tensor:
    """``img.filter(ImageFilter.GaussianBlur(radius))`` per image.

    Pillow approximates the Gaussian by 3 box blurs of a fractional radius
    along each axis (``BoxBlur.c``), in 8.24 fixed point with the edge
    pixels extended, rounding to uint8 after every pass.

    Args:
        radius (Tensor): (N, ) blur radii (Pillow's ``radius``, > 0).
    """
    r = radius.to(img.device, torch.float32)
    sigma2 = r * r / 3  # 3 passes; float32 as in ImagingGaussianBlur
    length = torch.sqrt(12.0 * sigma2.double() + 1.0).float()
    whole = torch.floor((length.double() - 1.0) / 2.0).float()
    frac = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2)
    frac = frac / (6 * (sigma2 - (whole + 1) * (whole + 1)))
    box = whole + frac  # float radius of each box pass
    near = box.trunc().long()  # (N, )
    one = 1 << 24
    full = (one / (box * 2 + 1)).trunc().long()  # float32 division
    edge = (one - (near * 2 + 1) * full) // 2
    x = img.to(torch.int64)
    for dim in (3, 3, 3, 2, 2, 2):  # rows, then columns
        x = _box_pass(x, dim, near, full, edge)
    return x.to(img.dtype)


def _box_pass(x: Tensor, dim: int, near: Tensor, full: Tensor,
              edge: Tensor) -> Tensor:
    """One ``ImagingLineBoxBlur`` pass along ``dim`` of (N, C, H, W) int64."""
    size = x.shape[dim]
    reach = int(near.max()) + 1
    pos = torch.arange(size, device=x.device)
    acc = torch.zeros_like(x)
    for k in range(-reach, reach + 1):
        taps = x.index_select(dim, (pos + k).clamp(0, size - 1))
        weight = torch.where(
            near >= abs(k), full,
            torch.where(near + 1 == abs(k), edge, torch.zeros_like(edge)))
        acc += weight.view(-1, 1, 1, 1) * taps
    return (acc + (1 << 23)) >> 24
