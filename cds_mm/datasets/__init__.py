"""Datasets: Fashion-MNIST from local IDX files, the generated COCO-format
detection sets and labelled / unlabelled splits for semi-supervised CDS."""
from ..utils import has_library
from . import transforms  # noqa: F401
from .dense_objects import make_dense_coco
from .shapes import make_shapes_coco

__all__ = ['make_shapes_coco', 'make_dense_coco']

if has_library('mmpretrain'):
    from .fashion_mnist import (FashionMNISTIDX, make_fashion_mosaic_coco,
                                read_idx)
    from .semi_split import SemiSplitDataset, stratified_split, write_split
    __all__ += [
        'FashionMNISTIDX', 'make_fashion_mosaic_coco', 'read_idx',
        'SemiSplitDataset', 'stratified_split', 'write_split'
    ]
