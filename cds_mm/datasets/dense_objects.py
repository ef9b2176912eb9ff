"""A deterministic COCO-format detection set of many small objects of one
class per image (a stand-in for aerial tree counting, crowds, cells).

Every image holds ``min_objects`` to ``max_objects`` irregular, shaded blobs
with a dark rim (the one class, ``'object'``), sides a few percent of the
image, on the textured background of the shapes set, with unannotated clutter
(rotated rectangles and lines) underneath. Objects may overlap: a later one
hides part of the earlier ones, but never more than ``1 - min_visible`` of
any of them, and each box is the tight extent of the object's visible pixels.
The boxes depend only on the seed and on cv2's integer drawing, so the same
seed gives byte-identical json files; the images are also identical on one
machine.
"""
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .shapes import SPLITS, _background, mask_box, write_coco_set

DENSE_CLASSES = ('object', )


def _blob(rng: np.random.Generator, size: int,
          side_range: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray]:
    """One irregular blob at a random place.

    Returns:
        tuple: (S, S) bool mask and (S, S) float32 shading in [0, 1] (1 at the
            centre, 0 outside), from which the renderer paints a shaded body
            with a dark rim.
    """
    w, h = rng.uniform(*side_range, 2) * size + 2
    cx = rng.uniform(w / 2, size - w / 2)
    cy = rng.uniform(h / 2, size - h / 2)
    # 12 vertices on an ellipse, radii jittered by up to 20 %
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    radii = rng.uniform(0.8, 1.0, 12)
    pts = np.stack([
        cx + radii * w / 2 * np.cos(angles),
        cy + radii * h / 2 * np.sin(angles)
    ], 1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    dist = np.sqrt(((xx - cx) / (w / 2))**2 + ((yy - cy) / (h / 2))**2)
    shade = np.clip(1.0 - dist, 0.0, 1.0) * mask
    return mask.astype(bool), shade.astype(np.float32)


def _clutter(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    """Paint ``count`` unannotated rotated rectangles and lines, in place."""
    size = img.shape[0]
    for _ in range(count):
        colour = rng.uniform(0, 255, 3).tolist()
        if rng.random() < 0.5:
            rect = ((float(rng.uniform(0, size)), float(rng.uniform(0, size))),
                    (float(rng.uniform(0.05, 0.25) * size),
                     float(rng.uniform(0.05, 0.25) * size)),
                    float(rng.uniform(0, 180)))
            cv2.fillPoly(img, [np.round(cv2.boxPoints(rect)).astype(np.int32)],
                         colour)
        else:
            p0 = tuple(int(v) for v in rng.integers(0, size, 2))
            p1 = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.line(img, p0, p1, colour, int(rng.integers(1, 5)))


def render_dense(
    rng: np.random.Generator,
    img_size: int = 320,
    num_objects: int = 20,
    side_range: Tuple[float, float] = (0.04, 0.1),
    min_visible: float = 0.6,
    max_tries: int = 50
) -> Tuple[np.ndarray, List[Tuple[int, List[int], int]]]:
    """Render one image with up to ``num_objects`` objects of class 1.

    Args:
        rng (np.random.Generator): Source of all randomness.
        img_size (int): Side of the square image. Defaults to 320.
        num_objects (int): Objects to place; one that finds no place in
            ``max_tries`` draws is skipped. Defaults to 20.
        side_range (tuple[float, float]): Range of an object's box sides as
            fractions of ``img_size``. Defaults to (0.04, 0.1).
        min_visible (float): Smallest visible fraction of every object.
            Defaults to 0.6.
        max_tries (int): Placement attempts per object. Defaults to 50.

    Returns:
        tuple: (S, S, 3) uint8 BGR image and ``[(1, [x, y, w, h], area),
            ...]`` in drawing order.
    """
    img = np.ascontiguousarray(_background(rng, img_size))
    _clutter(rng, img, int(rng.integers(3, 9)))
    # one colour family per image, each object a variation of it
    base = rng.uniform(40, 215, 3)
    owner = np.full((img_size, img_size), -1, np.int32)
    full_area: List[int] = []
    for _ in range(num_objects):
        for _ in range(max_tries):
            mask, shade = _blob(rng, img_size, side_range)
            if mask.sum() < 16:
                continue
            hidden = np.bincount(
                owner[mask & (owner >= 0)], minlength=len(full_area))
            visible = np.bincount(owner[owner >= 0], minlength=len(full_area))
            left = visible - hidden
            if all(left[j] >= min_visible * full_area[j]
                   for j in range(len(full_area))):
                break
        else:
            continue
        colour = np.clip(base + rng.uniform(-30, 30, 3), 0, 255)
        # a bright body that darkens to a rim of 30 % brightness
        img[mask] = colour * (0.3 + 0.7 * np.sqrt(shade[mask]))[:, None]
        owner[mask] = len(full_area)
        full_area.append(int(mask.sum()))
    img += rng.normal(0, 6, img.shape)
    objects = []
    for j in range(len(full_area)):
        box, area = mask_box(owner == j)
        objects.append((1, box, area))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def make_dense_coco(out_dir: str,
                    num_train: int = 200,
                    num_val: int = 50,
                    img_size: int = 320,
                    seed: int = 0,
                    ext: str = 'png',
                    min_objects: int = 15,
                    max_objects: int = 30,
                    side_range: Sequence[float] = (0.04, 0.1),
                    min_visible: float = 0.6) -> Dict[str, str]:
    """Generate (or reuse) the dense one-class detection set in COCO format.

    Args:
        out_dir (str): Output folder, e.g. ``data/dense``.
        num_train (int): Training images. Defaults to 200.
        num_val (int): Validation images. Defaults to 50.
        img_size (int): Side of the square images, >= 64. Defaults to 320.
        seed (int): Seed; image ``i`` of a split draws from its own generator.
            Defaults to 0.
        ext (str): ``'png'`` or ``'jpg'``. Defaults to ``'png'``.
        min_objects (int): Fewest objects an image asks for. Defaults to 15.
        max_objects (int): Most objects an image asks for; an image gets
            fewer than asked only when no place is found. Defaults to 30.
        side_range (Sequence[float]): ``(low, high)``, an object's box sides
            as fractions of ``img_size``, ``0 < low <= high <= 0.5``.
            Defaults to (0.04, 0.1): 15-34 px objects at 320 px.
        min_visible (float): Smallest visible fraction of an occluded object,
            in (0, 1]; 1 forbids overlap. Defaults to 0.6.

    Returns:
        dict: Paths ``root``, ``meta``, ``{train,val}_img`` and
            ``{train,val}_ann``.
    """
    if not isinstance(img_size, int) or img_size < 64:
        raise ValueError(f'img_size must be an int >= 64, got {img_size!r}')
    if not (isinstance(min_objects, int) and isinstance(max_objects, int)
            and 1 <= min_objects <= max_objects):
        raise ValueError('min_objects and max_objects must be ints with '
                         f'1 <= min_objects <= max_objects, got '
                         f'{min_objects!r}, {max_objects!r}')
    side_range = tuple(float(v) for v in side_range)
    if len(side_range) != 2 or not 0 < side_range[0] <= side_range[1] <= 0.5:
        raise ValueError(
            f'side_range must be (low, high) with 0 < low <= high <= 0.5, '
            f'got {side_range}')
    if not 0 < min_visible <= 1:
        raise ValueError(f'min_visible must be in (0, 1], got {min_visible}')
    counts = dict(train=num_train, val=num_val)

    def render(split: str, idx: int):
        rng = np.random.default_rng([seed, SPLITS.index(split), 2, idx])
        num = int(rng.integers(min_objects, max_objects + 1))
        return render_dense(rng, img_size, num, side_range, min_visible)

    params = dict(
        kind='dense_objects',
        version=1,
        num_train=num_train,
        num_val=num_val,
        img_size=img_size,
        seed=seed,
        min_objects=min_objects,
        max_objects=max_objects,
        side_range=side_range,
        min_visible=min_visible)
    return write_coco_set(out_dir, params, DENSE_CLASSES, counts, render, ext)
