"""set_data_root / merge_cfg_options and check_data on small configs.

The configs are written here (no mmdet / mmpretrain base), and every data
folder is made in ``tmp_path``; nothing is built or downloaded.
"""
import os.path as osp

import pytest
from mmengine.config import Config

from cds_mm.datasets.data_checks import MissingDataError, check_data
from cds_mm.datasets.data_root import (iter_datasets, merge_cfg_options,
                                       set_data_root)

# two loaders with different roots, a wrapper of wrappers, a list-valued
# evaluator, an absolute ann_file under the old root, a prefix dict
NESTED = """
coco = 'data/coco/'
train_dataloader = dict(dataset=dict(
    type='SemiSplitDataset', split_file='data/semi_splits/s.json',
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='CocoDataset', data_root=coco,
             ann_file='annotations/a.json', data_prefix=dict(img='train/')),
        dict(type='CocoDataset', data_root='data/extra',
             ann_file='data/extra/annotations/b.json',
             data_prefix=dict(img='data/extra/img/')),
    ])))
val_dataloader = dict(dataset=dict(
    type='CocoDataset', data_root=coco, ann_file='annotations/v.json',
    data_prefix=dict(img='val/')))
test_dataloader = None
val_evaluator = [dict(type='CocoMetric', ann_file=coco + 'annotations/v.json'),
                 dict(type='Other', ann_file='elsewhere/x.json')]
"""


def test_set_data_root_moves_nested_datasets_and_evaluators(tmp_path):
    cfg = Config.fromstring(NESTED, '.py')
    new = str(tmp_path / 'root')
    keys = set_data_root(cfg, new)
    assert keys == [
        'train_dataloader.dataset.dataset.datasets.0',
        'train_dataloader.dataset.dataset.datasets.1', 'val_dataloader.dataset'
    ]
    inner = cfg.train_dataloader.dataset.dataset.datasets
    assert inner[0].data_root == new and inner[1].data_root == new
    # relative entries stay relative to the root; those under the old
    # root move under the new one
    assert inner[0].ann_file == 'annotations/a.json'
    assert inner[1].ann_file == osp.join(new, 'annotations/b.json')
    assert inner[1].data_prefix.img == osp.join(new, 'img/')
    assert cfg.val_dataloader.dataset.data_root == new
    assert cfg.val_evaluator[0].ann_file == osp.join(new, 'annotations/v.json')
    # not under a dataset root: left alone
    assert cfg.val_evaluator[1].ann_file == 'elsewhere/x.json'
    assert cfg.train_dataloader.dataset.split_file == (
        'data/semi_splits/s.json')
    assert cfg.data_root == new


def test_iter_datasets_skips_missing_loaders():
    cfg = Config.fromstring(NESTED, '.py')
    keys = [k for k, _ in iter_datasets(cfg, ['test_dataloader', 'nope'])]
    assert keys == []


def test_merge_cfg_options_lets_explicit_keys_win(tmp_path):
    cfg = Config.fromstring(NESTED, '.py')
    merge_cfg_options(
        cfg, {
            'data_root': 'X',
            'val_dataloader.dataset.data_root': 'Y',
            'train_dataloader.batch_size': 3
        })
    assert cfg.val_dataloader.dataset.data_root == 'Y'
    assert cfg.train_dataloader.batch_size == 3
    assert all(d.data_root == 'X'
               for d in cfg.train_dataloader.dataset.dataset.datasets)


@pytest.mark.parametrize('bad', ['', '  ', None, 3])
def test_empty_data_root_is_rejected(bad):
    cfg = Config.fromstring(NESTED, '.py')
    with pytest.raises(ValueError, match='data_root'):
        set_data_root(cfg, bad)


def cifar_cfg(root):
    return Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='mmpretrain.CIFAR100',
                    data_root=root,
                    split='train',
                    download=False))))


def test_missing_cifar_names_path_key_and_source(tmp_path):
    root = str(tmp_path / 'cifar100')
    with pytest.raises(MissingDataError) as err:
        check_data(cifar_cfg(root))
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith('train_dataloader.dataset.data_root: ')
    assert repr(root) in msg and 'cifar-100-python.tar.gz' in msg
    assert 'data_root=DIR' in msg and 'CDS_DATA_ROOT' in msg
    # the folder alone is not enough: the unpacked archive is needed
    (tmp_path / 'cifar100').mkdir()
    with pytest.raises(MissingDataError, match='cifar-100-python'):
        check_data(cifar_cfg(root))
    (tmp_path / 'cifar100' / 'cifar-100-python').mkdir()
    check_data(cifar_cfg(root))


def test_fashion_mnist_accepts_gz_or_plain(tmp_path):
    names = [
        'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte',
        't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte.gz'
    ]
    for name in names:
        (tmp_path / name).write_bytes(b'')
    cfg = Config(
        dict(
            test_dataloader=dict(
                dataset=dict(
                    type='FashionMNISTIDX',
                    data_root=str(tmp_path),
                    split='test'))))
    check_data(cfg)
    (tmp_path / names[2]).unlink()
    with pytest.raises(MissingDataError) as err:
        check_data(cfg)
    assert 't10k-images-idx3-ubyte' in str(err.value)
    assert 'dataset-fashion-mnist' in str(err.value)


def make_coco(root, split):
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    (root / 'annotations' / f'{split}.json').write_text('{}')
    (root / split).mkdir()


def test_coco_files_prefix_and_evaluator(tmp_path):
    cfg = Config.fromstring(NESTED, '.py')
    cfg.train_dataloader.dataset = cfg.train_dataloader.dataset.dataset
    set_data_root(cfg, str(tmp_path))
    cfg.train_dataloader.dataset.datasets.pop(1)
    with pytest.raises(
            MissingDataError,
            match=r"^train_dataloader\.dataset\.datasets\.0\."
            r"ann_file: .*a\.json.*cocodataset\.org"):
        check_data(cfg)
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'a.json').write_text('{}')
    with pytest.raises(
            MissingDataError,
            match=r'datasets\.0\.data_prefix\.img: .*train/'):
        check_data(cfg)
    (tmp_path / 'train').mkdir()
    check_data(cfg, ['train_dataloader'])  # the val set is not asked for
    make_coco(tmp_path, 'val')
    (tmp_path / 'annotations' / 'val.json').rename(tmp_path / 'annotations' /
                                                   'v.json')
    # the val set is there, the second metric's annotation file is not
    with pytest.raises(
            MissingDataError,
            match=r"^val_evaluator\.1\.ann_file: 'elsewhere"):
        check_data(cfg)
    cfg.val_evaluator.pop(1)
    check_data(cfg)


def test_generated_sets_say_how_to_make_them(tmp_path):
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='CocoDataset',
                    data_root=str(tmp_path / 'shapes') + '/',
                    ann_file='annotations/instances_train.json'))))
    with pytest.raises(MissingDataError, match='make_shapes_coco.py'):
        check_data(cfg)


def test_missing_split_file_names_the_tool(tmp_path):
    (tmp_path / 'cifar-100-python').mkdir()
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='SemiSplitDataset',
                    split_file=str(tmp_path / 's.json'),
                    dataset=cifar_cfg(str(
                        tmp_path)).train_dataloader.dataset))))
    with pytest.raises(
            MissingDataError,
            match=r'^train_dataloader\.dataset\.split_file: .*'
            r'make_semi_split\.py'):
        check_data(cfg)
    (tmp_path / 's.json').write_text('{}')
    check_data(cfg)
