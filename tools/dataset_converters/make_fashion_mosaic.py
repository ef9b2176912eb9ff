"""Build the Fashion-MNIST mosaic COCO detection set from local IDX files
(deterministic).

The IDX files come from Debian's ``dataset-fashion-mnist`` package (no
download).

Example:
    python tools/dataset_converters/make_fashion_mosaic.py data/fashion_mnist
    data/fashion_mosaic
"""
import argparse
import json

from cds_mm.datasets import make_fashion_mosaic_coco


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'idx_root',
        nargs='?',
        default='data/fashion_mnist',
        help='folder with the four Fashion-MNIST IDX files')
    parser.add_argument(
        'out_dir',
        nargs='?',
        default='data/fashion_mosaic',
        help='output folder')
    parser.add_argument(
        '--num-train', type=int, default=5000, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=1000, help='validation images')
    parser.add_argument(
        '--canvas', type=int, default=128, help='side of the square images')
    parser.add_argument(
        '--items',
        type=int,
        nargs=2,
        default=(1, 4),
        metavar=('MIN', 'MAX'),
        help='items per image')
    parser.add_argument(
        '--scale',
        type=int,
        nargs=2,
        default=(24, 64),
        metavar=('MIN', 'MAX'),
        help='side of a pasted item in pixels')
    parser.add_argument('--seed', type=int, default=0, help='generator seed')
    return parser.parse_args()


def main():
    args = parse_args()
    paths = make_fashion_mosaic_coco(
        args.idx_root,
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        canvas=args.canvas,
        items=args.items,
        scale=args.scale,
        seed=args.seed)
    parts = []
    for split in ('train', 'val'):
        with open(paths[f'{split}_ann']) as f:
            coco = json.load(f)
        parts.append(f"{split}: {len(coco['images'])} images, "
                     f"{len(coco['annotations'])} boxes")
    print(f"{'; '.join(parts)}; {len(coco['categories'])} classes -> "
          f"{paths['root']}")


if __name__ == '__main__':
    main()
