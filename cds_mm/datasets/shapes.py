"""A deterministic COCO-format detection set of coloured shapes, and the COCO
writer it shares.

Images hold 1-3 (by default) filled rectangles (mildly rotated), ellipses and
triangles in random colours and sizes on a textured, noisy background; a few
percent of the images hold no object at all (the box-free path). Shapes never
overlap pixel-wise, so every box is the tight extent of its shape. Boxes depend
only on the seed and on cv2's integer drawing, so the same seed gives
byte-identical json files; the images themselves are also identical on one
machine.
"""
import json
import os
import os.path as osp
import re
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

SHAPE_CLASSES = ('rectangle', 'ellipse', 'triangle')
SPLITS = ('train', 'val')
# render(split, index) -> (H, W, 3) uint8 BGR image, [(category_id, [x, y, w,
# h], area), ...]
Render = Callable[[str, int], Tuple[np.ndarray, List[Tuple[int, List[int],
                                                           int]]]]


def _paths(out_dir: str) -> Dict[str, str]:
    paths = {'root': out_dir, 'meta': osp.join(out_dir, 'meta.json')}
    for split in SPLITS:
        paths[f'{split}_img'] = osp.join(out_dir, split)
        paths[f'{split}_ann'] = osp.join(out_dir, 'annotations',
                                         f'instances_{split}.json')
    return paths


def _is_complete(paths: Dict[str, str], params: dict, counts: Dict[str, int],
                 ext: str) -> bool:
    try:
        with open(paths['meta']) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    if meta.get('params') != params:
        return False
    return all(
        osp.isfile(paths[f'{s}_ann']) and all(
            osp.isfile(osp.join(paths[f'{s}_img'], f'{i:06d}.{ext}'))
            for i in range(counts[s])) for s in SPLITS)


def write_coco_set(out_dir: str,
                   params: dict,
                   class_names: Sequence[str],
                   counts: Dict[str, int],
                   render: Render,
                   ext: str = 'png') -> Dict[str, str]:
    """Write ``out_dir/{train,val}/NNNNNN.<ext>`` and
    ``out_dir/annotations/instances_*.json``.

    Idempotent: when ``out_dir/meta.json`` records the same ``params`` and
        every file is present,
    nothing is rewritten. ``meta.json`` is written last, so an interrupted run
    is redone.

    Args:
        out_dir (str): Output folder.
        params (dict): JSON-serialisable parameters that fully determine the
            set.
        class_names (Sequence[str]): Category names; category ids are
            1..len(class_names).
        counts (dict): Number of images per split, keys ``'train'`` and
            ``'val'``.
        render (callable): ``render(split, index)`` returns the BGR image and
            its objects as ``(category_id, [x, y, w, h], area)`` with integer
            pixel values.
        ext (str): ``'png'`` or ``'jpg'``. Defaults to ``'png'``.

    Returns:
        dict: Paths ``root``, ``meta``, ``{train,val}_img`` (folders) and
            ``{train,val}_ann``.
    """
    if ext not in ('png', 'jpg'):
        raise ValueError(f"ext must be 'png' or 'jpg', got {ext!r}")
    for split in SPLITS:
        if not isinstance(counts[split], int) or counts[split] < 0:
            raise ValueError(
                f'num_{split} must be an int >= 0, got {counts[split]!r}')
    # tuples -> lists, as read back
    params = json.loads(json.dumps(dict(params, ext=ext)))
    paths = _paths(out_dir)
    if _is_complete(paths, params, counts, ext):
        return paths
    if osp.isfile(paths['meta']):
        os.remove(paths['meta'])
    os.makedirs(osp.dirname(paths['train_ann']), exist_ok=True)
    categories = [
        dict(id=i + 1, name=n, supercategory='object')
        for i, n in enumerate(class_names)
    ]
    own_file = re.compile(r'^\d{6}\.(png|jpg)$')
    for split in SPLITS:
        img_dir = paths[f'{split}_img']
        os.makedirs(img_dir, exist_ok=True)
        # drop images left by an earlier, different set
        for name in os.listdir(img_dir):
            if own_file.match(name):
                os.remove(osp.join(img_dir, name))
        images, annotations = [], []
        for idx in range(counts[split]):
            img, objects = render(split, idx)
            file_name = f'{idx:06d}.{ext}'
            if not cv2.imwrite(osp.join(img_dir, file_name), img):
                raise OSError(
                    f'could not write {osp.join(img_dir, file_name)}')
            images.append(
                dict(
                    id=idx + 1,
                    file_name=file_name,
                    width=int(img.shape[1]),
                    height=int(img.shape[0])))
            for cat_id, box, area in objects:
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=idx + 1,
                        category_id=int(cat_id),
                        bbox=[int(v) for v in box],
                        area=int(area),
                        iscrowd=0))
        coco = dict(
            info=dict(
                description=f'cds_mm generated set ({split})', params=params),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        with open(paths[f'{split}_ann'], 'w') as f:
            json.dump(coco, f, separators=(',', ':'))
    with open(paths['meta'], 'w') as f:
        json.dump(dict(params=params, counts=counts), f, indent=1)
    return paths


def mask_box(mask: np.ndarray) -> Tuple[List[int], int]:
    """Tight ``[x, y, w, h]`` box and pixel count of a non-empty (H, W) mask.
    """
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1,
            int(ys.max()) - y0 + 1], int(len(xs))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field plus a random stripe texture, (S, S, 3)
    float32."""
    grid = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
    bg = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    freq, theta = rng.uniform(0.1, 0.6), rng.uniform(0, np.pi)
    stripes = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)))
    return bg + rng.uniform(5, 25) * stripes[..., None]


def _shape_mask(rng: np.random.Generator, cls: int, size: int,
                size_range: Tuple[float, float]) -> np.ndarray:
    """Draw one filled shape of class ``cls`` (0-based) at a random place.

    Returns an (S, S) uint8 mask.

    Its box sides are drawn from ``size_range`` times ``size`` (plus 2 px)."""
    mask = np.zeros((size, size), np.uint8)
    w, h = (rng.uniform(*size_range, 2) * size).astype(int) + 2
    cx, cy = rng.integers(w // 2,
                          size - w // 2), rng.integers(h // 2, size - h // 2)
    if cls == 0:
        rect = ((float(cx), float(cy)), (float(w), float(h)),
                float(rng.uniform(-30, 30)))
        cv2.fillPoly(mask, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
    elif cls == 1:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(w) // 2, int(h) // 2),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        x0, y0 = cx - w // 2, cy - h // 2
        apex = (x0 + int(rng.uniform(0, 1) * w), y0)
        pts = np.array([apex, (x0, y0 + h), (x0 + w, y0 + h)], np.int32)
        if rng.random() < 0.5:  # point down
            pts[:, 1] = 2 * y0 + h - pts[:, 1]
        cv2.fillPoly(mask, [pts], 1)
    return mask


def render_shapes(
    rng: np.random.Generator,
    img_size: int = 128,
    num_objects: int = 1,
    max_tries: int = 30,
    size_range: Tuple[float, float] = (0.12, 0.4)
) -> Tuple[np.ndarray, List[Tuple[int, List[int], int]]]:
    """Render one image with up to ``num_objects`` non-overlapping shapes.

    Args:
        rng (np.random.Generator): Source of all randomness.
        img_size (int): Side of the square image. Defaults to 128.
        num_objects (int): Shapes to place; a shape that finds no free place in
            ``max_tries`` draws is skipped. Defaults to 1.
        max_tries (int): Placement attempts per shape. Defaults to 30.
        size_range (tuple[float, float]): Range of a shape's box sides as
            fractions of ``img_size``. Defaults to (0.12, 0.4).

    Returns:
        tuple: (S, S, 3) uint8 BGR image and ``[(category_id, [x, y, w, h],
            area), ...]``.
    """
    img = _background(rng, img_size)
    occupied = np.zeros((img_size, img_size), bool)
    objects = []
    for _ in range(num_objects):
        cls = int(rng.integers(0, len(SHAPE_CLASSES)))
        for _ in range(max_tries):
            mask = _shape_mask(rng, cls, img_size, size_range).astype(bool)
            if mask.sum() >= 16 and not (mask & occupied).any():
                break
        else:
            continue
        region = img[mask].mean(0)
        # a colour that stands out from the background under it; a fixed number
        # of draws keeps the generator's state (hence every later box)
        # independent of float pixel values
        cands = rng.uniform(0, 255, (10, 3))
        colour = cands[int(np.argmax(np.abs(cands - region).sum(1) > 150))]
        # a mild texture of its own
        img[mask] = colour + rng.uniform(-20, 20) * np.sin(
            np.nonzero(mask)[1] * rng.uniform(0.2, 1.0))[:, None]
        occupied |= mask
        box, area = mask_box(mask)
        objects.append((cls + 1, box, area))
    img += rng.normal(0, 8, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def make_shapes_coco(
    out_dir: str,
    num_train: int = 1000,
    num_val: int = 200,
    img_size: int = 128,
    seed: int = 0,
    ext: str = 'png',
    empty_frac: float = 0.04,
    max_objects: int = 3,
    size_range: Sequence[float] = (0.25, 0.5)
) -> Dict[str, str]:
    """Generate (or reuse) the shapes detection set in COCO format.

    Args:
        out_dir (str): Output folder, e.g. ``data/shapes``.
        num_train (int): Training images. Defaults to 1000.
        num_val (int): Validation images. Defaults to 200.
        img_size (int): Side of the square images, >= 32. Defaults to 128.
        seed (int): Seed; image ``i`` of a split draws from its own generator.
            Defaults to 0.
        ext (str): ``'png'`` or ``'jpg'``. Defaults to ``'png'``.
        empty_frac (float): Fraction of images per split with no object; at
            least one such image when the split holds >= 2 images and
            ``empty_frac > 0``. Defaults to 0.04.
        max_objects (int): The other images hold 1 to ``max_objects`` shapes
            (fewer when no free place is found). Defaults to 3.
        size_range (Sequence[float]): ``(low, high)``, a shape's box sides as
            fractions of ``img_size``, ``0 < low <= high <= 0.9``. Defaults to
            (0.25, 0.5), objects that a tiny detector learns from scratch in
            minutes.

    Returns:
        dict: Paths ``root``, ``meta``, ``{train,val}_img`` and
            ``{train,val}_ann``.
    """
    if not isinstance(img_size, int) or img_size < 32:
        raise ValueError(f'img_size must be an int >= 32, got {img_size!r}')
    if not 0 <= empty_frac < 1:
        raise ValueError(f'empty_frac must be in [0, 1), got {empty_frac}')
    if not isinstance(max_objects, int) or max_objects < 1:
        raise ValueError(
            f'max_objects must be an int >= 1, got {max_objects!r}')
    size_range = tuple(float(v) for v in size_range)
    if len(size_range) != 2 or not 0 < size_range[0] <= size_range[1] <= 0.9:
        raise ValueError(
            f'size_range must be (low, high) with 0 < low <= high <= 0.9, '
            f'got {size_range}')
    counts = dict(train=num_train, val=num_val)
    for split, n in counts.items():
        if not isinstance(n, int) or n < 0:
            raise ValueError(f'num_{split} must be an int >= 0, got {n!r}')
    empty = {}
    for code, split in enumerate(SPLITS):
        n = counts[split]
        n_empty = max(1, round(n *
                               empty_frac)) if empty_frac > 0 and n >= 2 else 0
        chosen = np.random.default_rng([seed, code, 1]).choice(
            n, n_empty, replace=False)
        empty[split] = set(int(i) for i in chosen)

    def render(split: str, idx: int):
        rng = np.random.default_rng([seed, SPLITS.index(split), 0, idx])
        num = 0 if idx in empty[split] else int(
            rng.integers(1, max_objects + 1))
        return render_shapes(rng, img_size, num, size_range=size_range)

    params = dict(
        kind='shapes',
        version=1,
        num_train=num_train,
        num_val=num_val,
        img_size=img_size,
        seed=seed,
        empty_frac=empty_frac,
        max_objects=max_objects,
        size_range=size_range)
    return write_coco_set(out_dir, params, SHAPE_CLASSES, counts, render, ext)
