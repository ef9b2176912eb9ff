"""What the generators of COCO sets share: their common arguments and the
line they print when done."""
import argparse
import json


def generator_parser(description: str, out_dir: str, num_train: int,
                     num_val: int, img_size: int) -> argparse.ArgumentParser:
    """A parser with the output folder, split sizes, image side, seed and
    image format; a generator adds its own arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        'out_dir', nargs='?', default=out_dir, help='output folder')
    parser.add_argument(
        '--num-train', type=int, default=num_train, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=num_val, help='validation images')
    parser.add_argument(
        '--img-size',
        type=int,
        default=img_size,
        help='side of the square images')
    parser.add_argument('--seed', type=int, default=0, help='generator seed')
    parser.add_argument(
        '--ext', choices=['png', 'jpg'], default='png', help='image format')
    return parser


def summary(paths: dict) -> str:
    """One line: images and boxes (and boxes per image) per split, the
    classes, and the folder."""
    parts = []
    for split in ('train', 'val'):
        with open(paths[f'{split}_ann']) as f:
            coco = json.load(f)
        n_img, n_box = len(coco['images']), len(coco['annotations'])
        parts.append(f'{split}: {n_img} images, {n_box} boxes '
                     f'({n_box / max(n_img, 1):.1f} per image)')
    n_cls = len(coco['categories'])
    return (f"{'; '.join(parts)}; {n_cls} class{'es' * (n_cls != 1)} -> "
            f"{paths['root']}")
