"""Generate the coloured-shapes COCO detection set (deterministic, offline).

Example:
    python tools/dataset_converters/make_shapes_coco.py data/shapes --num-train
    1000 --num-val 200
"""
from generated_coco_cli import generator_parser, summary

from cds_mm.datasets import make_shapes_coco


def parse_args():
    parser = generator_parser(
        __doc__.splitlines()[0],
        out_dir='data/shapes',
        num_train=1000,
        num_val=200,
        img_size=128)
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
