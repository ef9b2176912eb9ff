"""Datasets: Fashion-MNIST from local IDX files and the generated COCO-format detection sets."""
from .fashion_mnist import FashionMNISTIDX, make_fashion_mosaic_coco, read_idx
from .shapes import make_shapes_coco

__all__ = ['FashionMNISTIDX', 'make_fashion_mosaic_coco', 'make_shapes_coco', 'read_idx']
