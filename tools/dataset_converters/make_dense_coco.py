"""Generate the dense one-class COCO detection set (deterministic, offline).

Example:
    python tools/dataset_converters/make_dense_coco.py data/dense --num-train
    200 --num-val 50
"""
import argparse
import json

from cds_mm.datasets import make_dense_coco


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'out_dir', nargs='?', default='data/dense', help='output folder')
    parser.add_argument(
        '--num-train', type=int, default=200, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=50, help='validation images')
    parser.add_argument(
        '--img-size', type=int, default=320, help='side of the square images')
    parser.add_argument('--seed', type=int, default=0, help='generator seed')
    parser.add_argument(
        '--ext', choices=['png', 'jpg'], default='png', help='image format')
    parser.add_argument(
        '--min-objects',
        type=int,
        default=15,
        help='fewest objects an image asks for')
    parser.add_argument(
        '--max-objects',
        type=int,
        default=30,
        help='most objects an image asks for')
    parser.add_argument(
        '--side-range',
        type=float,
        nargs=2,
        default=(0.04, 0.1),
        metavar=('LOW', 'HIGH'),
        help='box sides of the objects, as fractions of the image side')
    parser.add_argument(
        '--min-visible',
        type=float,
        default=0.6,
        help='smallest visible fraction of an occluded object (1: no '
        'overlap)')
    return parser.parse_args()


def summary(paths: dict) -> str:
    """One line: images, boxes and boxes per image per split, and the folder.
    """
    parts = []
    for split in ('train', 'val'):
        with open(paths[f'{split}_ann']) as f:
            coco = json.load(f)
        n_img, n_box = len(coco['images']), len(coco['annotations'])
        parts.append(f'{split}: {n_img} images, {n_box} boxes '
                     f'({n_box / max(n_img, 1):.1f} per image)')
    return f"{'; '.join(parts)}; 1 class -> {paths['root']}"


def main():
    args = parse_args()
    paths = make_dense_coco(
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        seed=args.seed,
        ext=args.ext,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        side_range=args.side_range,
        min_visible=args.min_visible)
    print(summary(paths))


if __name__ == '__main__':
    main()
