"""Stop a run early, in one line, when its data set is missing.

:func:`check_data` runs on a loaded config before anything is built (it
needs neither mmdet nor mmpretrain) and raises :class:`MissingDataError`
naming the missing path, its config key and how to get the data, instead of
a download attempt or a traceback from deep inside a dataset. It first warns
when the top-level ``data_root`` is not what the datasets read.
"""
import os.path as osp
from typing import Iterator, Sequence, Tuple

from .data_root import (ENV_VAR, LOADERS, evaluator_metrics, iter_datasets,
                        warn_data_root_mismatch)

_FMNIST = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
           't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
# What each dataset type reads under its data_root; a tuple lists
# alternatives, any one of which is enough.
REQUIRED = {
    'CIFAR10': ['cifar-10-batches-py'],
    'CIFAR100': ['cifar-100-python'],
    'FashionMNISTIDX': [(name + '.gz', name) for name in _FMNIST],
    'CUB':
    ['images', 'images.txt', 'image_class_labels.txt', 'train_test_split.txt'],
    'Flowers102': ['jpg', 'imagelabels.mat', 'setid.mat'],
    'FGVCAircraft': ['data/images'],
    'StanfordCars': [('cars_annos.mat', 'devkit')],
}
_CIFAR = ('download {} from https://www.cs.toronto.edu/~kriz/cifar.html '
          'and unpack it there (the configs never download)')
# Where to get the data: by the folder's name for the sets this project
# makes or documents, else by dataset type.
HOW_TO_GET = {
    'shapes':
    'make it with `python {converters}/make_shapes_coco.py DIR`',
    'fashion_mosaic':
    'make it with `python {converters}/make_fashion_mosaic.py '
    'FASHION_MNIST_DIR DIR`',
    'StanfordDogs':
    'get images.tar and lists.tar from '
    'http://vision.stanford.edu/aditya86/ImageNetDogs/ and '
    'make train.txt / test.txt as the config header shows',
    'CIFAR10':
    _CIFAR.format('cifar-10-python.tar.gz'),
    'CIFAR100':
    _CIFAR.format('cifar-100-python.tar.gz'),
    'FashionMNISTIDX':
    '`apt-get install dataset-fashion-mnist` puts the '
    'IDX files in /usr/share/datasets/fashion-mnist',
    'ImageNet':
    'get ILSVRC2012 from https://image-net.org (train/ and '
    'val/ class folders or meta/*.txt, see mmpretrain\'s '
    'dataset guide)',
    'CocoDataset':
    'get COCO 2017 (train2017/, val2017/, annotations/) '
    'from https://cocodataset.org/#download',
    'CUB':
    'get CUB_200_2011.tgz from '
    'https://www.vision.caltech.edu/datasets/cub_200_2011/',
    'Flowers102':
    'get 102flowers.tgz, imagelabels.mat and setid.mat from '
    'https://www.robots.ox.ac.uk/~vgg/data/flowers/102/',
    'FGVCAircraft':
    'get fgvc-aircraft-2013b.tar.gz from '
    'https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/',
    'StanfordCars':
    'get Stanford Cars (car_ims/ + cars_annos.mat, or '
    'cars_train/ + cars_test/ + devkit/)',
}
_ELSE = 'see the README section "Data" for where each data set comes from'


def converters_dir() -> str:
    """The folder of our dataset converters, where this cds_mm has them.

    A clone has ``tools/dataset_converters`` next to the package; an installed
    wheel carries them in ``<site-packages>/cds_mm/.mim/tools/
    dataset_converters`` (``setup.py``).
    """
    pkg = osp.dirname(osp.dirname(osp.abspath(__file__)))
    clone = osp.dirname(pkg)
    if osp.isfile(osp.join(clone, 'setup.py')):
        candidates = [osp.join(clone, 'tools', 'dataset_converters')]
    else:
        candidates = []
    candidates.append(osp.join(pkg, '.mim', 'tools', 'dataset_converters'))
    for path in candidates:
        if osp.isdir(path):
            return path
    return 'tools/dataset_converters'


class MissingDataError(FileNotFoundError):
    """A dataset's files are not where the config says; one-line message."""


def _type_name(node: dict) -> str:
    """``'mmpretrain.CIFAR10'`` -> ``'CIFAR10'``; ``''`` without a type."""
    name = node.get('type', '')
    return name.rsplit('.', 1)[-1] if isinstance(name, str) else ''


def _hint(node: dict) -> str:
    """How to get the data of one dataset cfg, and how to point at it."""
    folder = osp.basename(str(node.get('data_root') or '').rstrip('/'))
    how = HOW_TO_GET.get(folder) or HOW_TO_GET.get(_type_name(node), _ELSE)
    how = how.replace('{converters}', converters_dir())
    return (f'{how}; then pass --cfg-options data_root=DIR to our tools or '
            f'set {ENV_VAR}=DIR')


def _needed(node: dict) -> Iterator[Tuple[str, Tuple[str, ...]]]:
    """``(config key suffix, alternative paths)`` one dataset needs."""
    root = node.get('data_root') or ''
    yield 'data_root', (root or '.', )
    name = _type_name(node)
    required = list(REQUIRED.get(name, []))
    if name == 'ImageNet' and node.get(
            'split') and not node.get('data_prefix'):
        required.append(str(node['split']))
    for item in required:
        alts = item if isinstance(item, tuple) else (item, )
        yield 'data_root', tuple(osp.join(root, a) for a in alts)
    ann_file = node.get('ann_file')
    if isinstance(ann_file, str) and ann_file:
        yield 'ann_file', (osp.join(root, ann_file), )
    prefix = node.get('data_prefix')
    prefixes = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
    for sub, value in prefixes:
        if isinstance(value, str) and value and '://' not in value:
            key = f'data_prefix.{sub}' if sub else 'data_prefix'
            yield key, (osp.join(root, value), )


def check_data(cfg, loaders: Sequence[str] = LOADERS) -> None:
    """Raise :class:`MissingDataError` if a dataset's files are missing.

    Checks every innermost dataset of ``loaders`` (its ``data_root``, the
    files its type reads, ``ann_file`` and ``data_prefix``), the
    ``split_file`` of a wrapper such as ``SemiSplitDataset``, and the
    evaluators' ``ann_file`` when ``val_dataloader`` or ``test_dataloader``
    is checked. Remote paths (``s3://`` ...) are not checked.

    Args:
        cfg (Config | dict): A loaded config.
        loaders (Sequence[str]): Dataloader keys to check, e.g.
            ``('train_dataloader', 'val_dataloader')`` for training and
            ``('test_dataloader', )`` for testing. Defaults to all three.
    """
    warn_data_root_mismatch(cfg, loaders)
    for key, node in iter_datasets(cfg, loaders):
        root = str(node.get('data_root') or '')
        if '://' in root:
            continue
        for suffix, alts in _needed(node):
            if not any(osp.exists(p) for p in alts):
                shown = ' or '.join(repr(p) for p in alts)
                raise MissingDataError(
                    f'{key}.{suffix}: {shown} not found '
                    f'({_type_name(node) or "dataset"}); {_hint(node)}')
    for key, node in _split_files(cfg, loaders):
        if not osp.isfile(node['split_file']):
            raise MissingDataError(
                f'{key}.split_file: {node["split_file"]!r} not found; make '
                f'it with `python {converters_dir()}/make_semi_split.py '
                'CONFIG`')
    evaluators = [n.replace('dataloader', 'evaluator') for n in loaders]
    for key, metric in evaluator_metrics(cfg):
        path = metric.get('ann_file')
        if (key.split('.')[0] in evaluators and isinstance(path, str) and path
                and '://' not in path and not osp.isfile(path)):
            raise MissingDataError(
                f'{key}.ann_file: {path!r} not found; it is the annotation '
                'file of the evaluated set, usually under its data_root '
                '(--cfg-options data_root=DIR moves it along)')


def _split_files(cfg, loaders: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    """``(key, wrapper cfg)`` for each dataset wrapper with a split file."""
    for name in loaders:
        loader = cfg.get(name)
        node = loader.get('dataset') if isinstance(loader, dict) else None
        key = f'{name}.dataset'
        while isinstance(node, dict):
            if isinstance(node.get('split_file'), str):
                yield key, node
            node, key = node.get('dataset'), f'{key}.dataset'
