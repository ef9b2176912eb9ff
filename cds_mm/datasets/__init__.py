"""Datasets: Fashion-MNIST from local IDX files, the generated COCO-format detection sets and
labelled / unlabelled splits for semi-supervised CDS."""
from .fashion_mnist import FashionMNISTIDX, make_fashion_mosaic_coco, read_idx
from .semi_split import SemiSplitDataset, stratified_split, write_split
from .shapes import make_shapes_coco

__all__ = ['FashionMNISTIDX', 'make_fashion_mosaic_coco', 'make_shapes_coco', 'read_idx',
           'SemiSplitDataset', 'stratified_split', 'write_split']
