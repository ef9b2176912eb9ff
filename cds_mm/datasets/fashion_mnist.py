"""Fashion-MNIST from local IDX files (no md5 check, no download) and a mosaic
detection set.

Debian's ``dataset-fashion-mnist`` package holds the four IDX files
recompressed, so their md5 sums differ from upstream's and mmpretrain's
``FashionMNIST`` would try to download; this module reads the decompressed
content instead.
"""
import gzip
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .shapes import mask_box, write_coco_set

FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                         'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
IDX_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
}
_IDX_DTYPES = {
    0x08: '>u1',
    0x09: '>i1',
    0x0B: '>i2',
    0x0C: '>i4',
    0x0D: '>f4',
    0x0E: '>f8'
}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not, told by its content) into a
    numpy array.

    Args:
        path (str): The file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        np.ndarray: Native-endian array of the shape the header states, e.g.
            (N, 28, 28) uint8.
    """
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f'{path}: corrupt gzip stream ({e})') from e
    if len(raw) < 4 or raw[:2] != b'\x00\x00' or raw[2] not in _IDX_DTYPES:
        raise ValueError(f'{path}: not an IDX file (magic number '
                         f'{raw[:4].hex() or "missing"})')
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(
            f'{path}: IDX header with {ndim} dimensions is truncated or empty')
    shape = tuple(int(d) for d in np.frombuffer(raw, '>u4', ndim, offset=4))
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f'{path}: header says shape {shape} ({expected} bytes) but the '
            'file '
            f'holds {len(raw)} bytes')
    data = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder('='))


def find_idx_files(root: str) -> Dict[str, Tuple[str, str]]:
    """Paths of the four Fashion-MNIST IDX files in ``root`` (``.gz``
    preferred, plain accepted).

    Returns:
        dict: ``{'train': (images, labels), 'test': (images, labels)}``.
    """
    found, missing = {}, []
    for part, names in IDX_FILES.items():
        paths = []
        for name in names:
            cands = [osp.join(root, name + '.gz'), osp.join(root, name)]
            hit = next((c for c in cands if osp.isfile(c)), None)
            missing += [] if hit else [name + '[.gz]']
            paths.append(hit)
        found[part] = tuple(paths)
    if missing:
        raise FileNotFoundError(
            f'Fashion-MNIST IDX files missing in {root!r}: '
            f'{", ".join(missing)} (expected '
            f'{", ".join(n + ".gz" for v in IDX_FILES.values() for n in v)}, '
            'or without .gz). '
            'Install them offline with `apt-get install '
            'dataset-fashion-mnist` (they land in '
            '/usr/share/datasets/fashion-mnist) and pass that folder as '
            'data_root / idx_root, '
            'or link it to data/fashion_mnist.')
    return found


def load_idx_pair(images_path: str,
                  labels_path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one images/labels pair: (N, H, W) uint8 and (N,)
    int64."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f'{images_path}: expected (N, H, W) uint8 images, got '
            f'{images.shape} {images.dtype}')
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f'{labels_path}: {labels.shape} labels for {len(images)} images')
    return images, labels.astype(np.int64)


def split_indices(n: int, val_size: int,
                  split_seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic disjoint (train, val) index arrays, each sorted, covering
    ``range(n)``."""
    if not 0 <= val_size < n:
        raise ValueError(f'val_size must be in [0, {n}), got {val_size}')
    perm = np.random.default_rng(split_seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


@DATASETS.register_module()
class FashionMNISTIDX(BaseDataset):
    """Fashion-MNIST read from the four IDX files in ``data_root``; never
    downloads.

    Args:
        data_root (str): Folder with
            ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``. Defaults to
            ``'data/fashion_mnist'``.
        split (str): ``'train'`` and ``'val'`` split the 60k training set
            deterministically; ``'test'`` is t10k. Defaults to ``'train'``.
        val_size (int): Images of the training set held out as ``'val'``.
            Defaults to 5000.
        split_seed (int): Seed of the train/val split. Defaults to 0.
        max_samples (int, optional): Keep only the first ``max_samples`` images
            of the split (in file order). Defaults to None (all).
        metainfo (dict, optional): Overrides ``METAINFO``. Defaults to None.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``test_mode``, ...).
    Shapes:
        img: (28, 28, 3) uint8, the gray channel replicated.
        gt_label: () int class id in [0, 10).
    """
    METAINFO = {'classes': FASHION_MNIST_CLASSES}

    def __init__(self,
                 data_root: str = 'data/fashion_mnist',
                 split: str = 'train',
                 val_size: int = 5000,
                 split_seed: int = 0,
                 max_samples: Optional[int] = None,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if split not in ('train', 'val', 'test'):
            raise ValueError(
                f"split must be 'train', 'val' or 'test', got {split!r}")
        if max_samples is not None and (not isinstance(max_samples, int)
                                        or max_samples < 1):
            raise ValueError(
                f'max_samples must be None or an int >= 1, got {max_samples!r}'
            )
        self.split, self.val_size = split, val_size
        self.split_seed = split_seed
        self.max_samples = max_samples
        super().__init__(
            ann_file='',
            metainfo=metainfo,
            data_root=data_root,
            data_prefix='',
            **kwargs)

    def load_data_list(self):
        """Read the IDX pair of the split; images stay (28, 28) until
        ``get_data_info``."""
        files = find_idx_files(self.data_root)
        images, labels = load_idx_pair(
            *files['test' if self.split == 'test' else 'train'])
        if self.split == 'test':
            keep = np.arange(len(images))
        else:
            if not 0 <= self.val_size < len(images):
                raise ValueError(
                    f'val_size={self.val_size} (dataset key val_size: '
                    'train_dataloader.dataset.val_size and '
                    'val_dataloader.dataset.val_size, one value for both) '
                    f'must be in [0, {len(images)}): the training set in '
                    f'{self.data_root} has {len(images)} images')
            train, val = split_indices(
                len(images), self.val_size, self.split_seed)
            keep = train if self.split == 'train' else val
        if self.max_samples is not None:
            keep = keep[:self.max_samples]
        return [
            dict(img=images[i], gt_label=int(labels[i]), source_idx=int(i))
            for i in keep
        ]

    def get_data_info(self, idx: int) -> dict:
        """The data info with ``img`` as (H, W, 3) uint8 (kept single-channel
        in memory)."""
        info = super().get_data_info(idx)
        info['img'] = np.repeat(info['img'][..., None], 3, axis=2)
        return info


def _place(rng: np.random.Generator,
           canvas: int,
           side: int,
           box: Sequence[int],
           boxes,
           max_overlap: float,
           tries: int = 20) -> Optional[Tuple[int, int]]:
    """Top-left corner for a ``side``-square patch whose item ``box`` (relative
    to the patch)
    covers, and is covered by, no earlier box by more than ``max_overlap`` of
    the smaller area."""
    bx, by, bw, bh = box
    for _ in range(tries):
        x, y = (int(v) for v in rng.integers(0, canvas - side + 1, 2))
        ok = True
        for ox, oy, ow, oh in boxes:
            iw = max(0, min(x + bx + bw, ox + ow) - max(x + bx, ox))
            ih = max(0, min(y + by + bh, oy + oh) - max(y + by, oy))
            ok &= iw * ih <= max_overlap * min(bw * bh, ow * oh)
        if ok:
            return x, y
    return None


def make_fashion_mosaic_coco(idx_root: str,
                             out_dir: str,
                             num_train: int = 5000,
                             num_val: int = 1000,
                             canvas: int = 128,
                             items: Sequence[int] = (1, 4),
                             scale: Sequence[int] = (24, 64),
                             max_overlap: float = 0.2,
                             seed: int = 0) -> Dict[str, str]:
    """Build (or reuse) a COCO detection set of real Fashion-MNIST items pasted
    on a canvas.

    Each image is a black ``canvas`` square holding ``items`` items, each
    resized to a random square side in ``scale`` and pasted (pixel-wise max,
    PNG, lossless) at a random place whose box overlaps each earlier box by at
    most ``max_overlap`` of the smaller box (an item without such a place is
    dropped). Category = item class + 1 (10 categories); box = tight extent of
    the item's nonzero pixels after scaling; area = that pixel count. Train
    items come from the training IDX files, val items from t10k.

    Args:
        idx_root (str): Folder with the four IDX files, see
            :func:`find_idx_files`.
        out_dir (str): Output folder, e.g. ``data/fashion_mosaic``.
        num_train (int): Training images. Defaults to 5000.
        num_val (int): Validation images. Defaults to 1000.
        canvas (int): Side of the square images. Defaults to 128.
        items (Sequence[int]): Inclusive (min, max) items per image. Defaults
            to (1, 4).
        scale (Sequence[int]): Inclusive (min, max) side of a pasted item in
            pixels. Defaults to (24, 64).
        max_overlap (float): Largest intersection of two boxes, as a fraction
            of the smaller one's area. Defaults to 0.2.
        seed (int): Seed; image ``i`` of a split draws from its own generator.
            Defaults to 0.

    Returns:
        dict: Paths ``root``, ``meta``, ``{train,val}_img`` and
            ``{train,val}_ann``.
    """
    lo, hi = (int(v) for v in items)
    if not 0 <= lo <= hi:
        raise ValueError(
            f'items must be (min, max) with 0 <= min <= max, got {items}')
    s_lo, s_hi = (int(v) for v in scale)
    if not 4 <= s_lo <= s_hi <= canvas:
        raise ValueError('scale must be (min, max) with 4 <= min <= max <= '
                         f'canvas={canvas}, '
                         f'got {scale}')
    files = find_idx_files(idx_root)
    source = {
        part: [(osp.basename(p), osp.getsize(p)) for p in ps]
        for part, ps in files.items()
    }
    params = dict(
        kind='fashion_mosaic',
        version=1,
        num_train=num_train,
        num_val=num_val,
        canvas=canvas,
        items=[lo, hi],
        scale=[s_lo, s_hi],
        max_overlap=max_overlap,
        seed=seed,
        source=source)
    pools = {}

    def render(split: str, idx: int):
        part = 'train' if split == 'train' else 'test'
        if part not in pools:
            pools[part] = load_idx_pair(*files[part])
        images, labels = pools[part]
        rng = np.random.default_rng([seed, 0 if split == 'train' else 1, idx])
        img = np.zeros((canvas, canvas), np.uint8)
        objects, boxes = [], []
        for _ in range(int(rng.integers(lo, hi + 1))):
            k = int(rng.integers(0, len(images)))
            side = int(rng.integers(s_lo, s_hi + 1))
            patch = cv2.resize(
                images[k], (side, side), interpolation=cv2.INTER_LINEAR)
            if not patch.any():
                continue
            (bx, by, bw, bh), area = mask_box(patch > 0)
            corner = _place(rng, canvas, side, (bx, by, bw, bh), boxes,
                            max_overlap)
            if corner is None:
                continue
            x, y = corner
            np.maximum(
                img[y:y + side, x:x + side],
                patch,
                out=img[y:y + side, x:x + side])
            boxes.append([x + bx, y + by, bw, bh])
            objects.append((int(labels[k]) + 1, boxes[-1], area))
        return np.repeat(img[..., None], 3, axis=2), objects

    return write_coco_set(out_dir, params, FASHION_MNIST_CLASSES,
                          dict(train=num_train, val=num_val), render, 'png')
