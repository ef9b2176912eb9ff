"""Generate the coloured-shapes COCO detection set (deterministic, offline).

Example:
    python tools/dataset_converters/make_shapes_coco.py data/shapes --num-train
    1000 --num-val 200
"""
import argparse
import json

from cds_mm.datasets import make_shapes_coco


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'out_dir', nargs='?', default='data/shapes', help='output folder')
    parser.add_argument(
        '--num-train', type=int, default=1000, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=200, help='validation images')
    parser.add_argument(
        '--img-size', type=int, default=128, help='side of the square images')
    parser.add_argument('--seed', type=int, default=0, help='generator seed')
    parser.add_argument(
        '--ext', choices=['png', 'jpg'], default='png', help='image format')
    parser.add_argument(
        '--empty-frac',
        type=float,
        default=0.04,
        help='fraction of images without any object')
    parser.add_argument(
        '--max-objects', type=int, default=3, help='most shapes in one image')
    parser.add_argument(
        '--size-range',
        type=float,
        nargs=2,
        default=(0.25, 0.5),
        metavar=('LOW', 'HIGH'),
        help='box sides of the shapes, as fractions of the image side')
    return parser.parse_args()


def summary(paths: dict) -> str:
    """One line: images, boxes and classes per split, and the folder."""
    parts = []
    for split in ('train', 'val'):
        with open(paths[f'{split}_ann']) as f:
            coco = json.load(f)
        parts.append(f"{split}: {len(coco['images'])} images, "
                     f"{len(coco['annotations'])} boxes")
    return (f"{'; '.join(parts)}; {len(coco['categories'])} classes -> "
            f"{paths['root']}")


def main():
    args = parse_args()
    paths = make_shapes_coco(
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        seed=args.seed,
        ext=args.ext,
        empty_frac=args.empty_frac,
        max_objects=args.max_objects,
        size_range=args.size_range)
    print(summary(paths))


if __name__ == '__main__':
    main()
