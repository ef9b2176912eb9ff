"""Generate the dense one-class COCO detection set (deterministic, offline).

Example:
    python tools/dataset_converters/make_dense_coco.py data/dense --num-train
    200 --num-val 50
"""
from generated_coco_cli import generator_parser, summary

from cds_mm.datasets import make_dense_coco


def parse_args():
    parser = generator_parser(
        __doc__.splitlines()[0],
        out_dir='data/dense',
        num_train=200,
        num_val=50,
        img_size=320)
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
