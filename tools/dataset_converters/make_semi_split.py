"""Write the labelled / unlabelled split file a semi-supervised CDS config
reads.

The config's ``SemiSplitDataset`` entries name the file, the labelled fraction
and the seed; the split is class-stratified over the inner dataset's own labels
(any mmpretrain dataset: CIFAR, ImageNet annotation files, ``CustomDataset``
lists, ...). An existing file with the same fraction, seed and size is kept, so
every run of a comparison trains on the same labelled images.

Example:
    python tools/dataset_converters/make_semi_split.py \\
        configs/cds_semi/resnet18_semi-cds-20p_1xb128_cifar100.py
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

import cds_mm  # noqa: E402,F401  (registries)
from cds_mm.datasets import write_split  # noqa: E402
from cds_mm.datasets.data_root import merge_cfg_options  # noqa: E402


def find_split_cfgs(node) -> list:
    """Every ``SemiSplitDataset`` config in a (nested) dataset config."""
    if isinstance(node, dict):
        if node.get('type') == 'SemiSplitDataset':
            return [node]
        return [c for v in node.values() for c in find_split_cfgs(v)]
    if isinstance(node, (list, tuple)):
        return [c for v in node for c in find_split_cfgs(v)]
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='semi-supervised training config')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace a split file that holds another fraction / seed / size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, as in tools/train.py')
    args = parser.parse_args()

    cfg = Config.fromfile(args.config)
    # data_root=DIR reaches every dataset
    merge_cfg_options(cfg, args.cfg_options)
    split_cfgs = find_split_cfgs(cfg.train_dataloader.dataset)
    if len(split_cfgs) != 1:
        raise SystemExit(
            f'{args.config}: train_dataloader.dataset holds {len(split_cfgs)} '
            'SemiSplitDataset entries, expected one')
    split_cfg = split_cfgs[0]
    split_file, fraction = split_cfg['split_file'], float(
        split_cfg['fraction'])
    seed = int(split_cfg.get('seed', 0))

    from mmpretrain.registry import DATASETS
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        dataset = DATASETS.build(split_cfg['dataset'])
    labels = dataset.get_gt_labels().tolist()  # mmpretrain's BaseDataset

    if osp.isfile(split_file) and not args.overwrite:
        with open(split_file) as f:
            old = json.load(f)
        same = (old.get('fraction'), old.get('seed'),
                old.get('num_samples')) == (fraction, seed, len(labels))
        if not same:
            raise SystemExit(
                f'{split_file} exists with fraction={old.get("fraction")}, '
                f'seed={old.get("seed")}, '
                f'num_samples={old.get("num_samples")}; '
                'pass --overwrite to replace it')
        print(f'{split_file} exists and matches (fraction {fraction}, seed '
              f'{seed}); kept')
        return
    split = write_split(split_file, labels, fraction, seed)
    print(f'{len(split["labelled"])} labelled + {len(split["unlabelled"])} '
          'unlabelled of '
          f'{len(labels)} (fraction {fraction}, seed {seed}) -> {split_file}')


if __name__ == '__main__':
    main()
