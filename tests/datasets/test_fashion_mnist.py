import gzip
import struct

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cds_mm.datasets import FashionMNISTIDX, make_fashion_mosaic_coco, read_idx

N_TRAIN, N_TEST = 60, 20


def write_idx(path, arr, code=0x08, gz=True):
    dtype = {0x08: '>u1', 0x0C: '>i4'}[code]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *
                                                      arr.shape)
    raw += np.ascontiguousarray(arr, dtype=dtype).tobytes()
    with open(path, 'wb') as f:
        f.write(gzip.compress(raw, mtime=0) if gz else raw)


def fake_items(labels, seed):
    """28x28 items: one rectangle of value 100 + 10 * label on zeros, random
    place and size."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((len(labels), 28, 28), np.uint8)
    for img, label in zip(imgs, labels):
        x, y = rng.integers(1, 12, 2)
        w, h = rng.integers(8, 16, 2)
        img[y:y + h, x:x + w] = 100 + 10 * label
    return imgs


@pytest.fixture(scope='module')
def idx_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('fmnist')
    # classes 0..6 only in train
    train_labels = np.arange(N_TRAIN) % 7
    # classes 7..9 only in t10k
    test_labels = 7 + np.arange(N_TEST) % 3
    write_idx(root / 'train-images-idx3-ubyte.gz', fake_items(train_labels, 0))
    write_idx(root / 'train-labels-idx1-ubyte.gz', train_labels)
    write_idx(
        root / 't10k-images-idx3-ubyte', fake_items(test_labels, 1), gz=False)
    write_idx(root / 't10k-labels-idx1-ubyte', test_labels, gz=False)
    return root


def test_read_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (True, False):
        write_idx(tmp_path / 'a', arr, gz=gz)
        got = read_idx(str(tmp_path / 'a'))
        assert got.dtype == np.uint8 and np.array_equal(got, arr)
    ints = np.array([-5, 70000, 3], np.int32)
    write_idx(tmp_path / 'i.gz', ints, code=0x0C)
    got = read_idx(str(tmp_path / 'i.gz'))
    assert got.dtype == np.int32 and got.dtype.isnative and got.tolist(
    ) == ints.tolist()
    (tmp_path / 'bad').write_bytes(b'\x00\x01\x08\x01' + bytes(8))
    with pytest.raises(ValueError, match='magic number 00010801'):
        read_idx(str(tmp_path / 'bad'))
    (tmp_path / 'bad.gz').write_bytes(
        gzip.compress(b'\x00\x00\x07\x01' + bytes(8)))
    with pytest.raises(ValueError, match='not an IDX file'):
        read_idx(str(tmp_path / 'bad.gz'))
    write_idx(tmp_path / 'short', arr, gz=False)
    (tmp_path / 'short').write_bytes((tmp_path / 'short').read_bytes()[:-1])
    with pytest.raises(ValueError, match=r'shape \(2, 3, 4\)'):
        read_idx(str(tmp_path / 'short'))


def test_split_disjoint_deterministic_sizes(idx_root):
    kw = dict(data_root=str(idx_root), val_size=15)
    train, val = FashionMNISTIDX(
        split='train', **kw), FashionMNISTIDX(
            split='val', **kw)
    test = FashionMNISTIDX(split='test', **kw)
    assert (len(train), len(val), len(test)) == (N_TRAIN - 15, 15, N_TEST)
    src = {
        ds: [ds.get_data_info(i)['source_idx'] for i in range(len(ds))]
        for ds in (train, val)
    }
    assert set(src[train]).isdisjoint(src[val])
    assert sorted(src[train] + src[val]) == list(range(N_TRAIN))
    again = FashionMNISTIDX(split='val', **kw)
    assert [again.get_data_info(i)['source_idx']
            for i in range(15)] == src[val]
    other = FashionMNISTIDX(split='val', split_seed=1, **kw)
    assert [other.get_data_info(i)['source_idx']
            for i in range(15)] != src[val]
    # a shuffled hold-out, not the head of the file
    assert src[val] != list(range(15))
    info = val.get_data_info(0)
    img, label = info['img'], info['gt_label']
    assert img.shape == (28, 28, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 2]).all() and img.max() == 100 + 10 * label
    assert label == info['source_idx'] % 7
    assert sorted(
        test.get_gt_labels().tolist()) == sorted(7 + np.arange(N_TEST) % 3)
    assert len(train.metainfo['classes']
               ) == 10 and train.metainfo['classes'][9] == 'Ankle boot'


def test_max_samples_and_registry_pipeline(idx_root):
    from mmpretrain.registry import DATASETS
    ds = DATASETS.build(
        dict(
            type='FashionMNISTIDX',
            data_root=str(idx_root),
            split='test',
            max_samples=5,
            pipeline=[dict(type='PackInputs')]))
    assert len(ds) == 5
    sample = ds[3]
    assert tuple(sample['inputs'].shape) == (3, 28, 28)
    assert int(sample['data_samples'].gt_label) == 7 + 3 % 3
    full = FashionMNISTIDX(data_root=str(idx_root), split='test')
    assert np.array_equal(
        full.get_data_info(3)['img'],
        ds.get_data_info(3)['img'])


def test_bad_arguments_and_missing_files(idx_root, tmp_path):
    with pytest.raises(ValueError, match="'dev'"):
        FashionMNISTIDX(data_root=str(idx_root), split='dev')
    with pytest.raises(ValueError, match='val_size'):
        FashionMNISTIDX(data_root=str(idx_root), val_size=N_TRAIN)
    with pytest.raises(ValueError, match='max_samples'):
        FashionMNISTIDX(data_root=str(idx_root), max_samples=0)
    (tmp_path / 'train-images-idx3-ubyte.gz').write_bytes(b'')
    with pytest.raises(FileNotFoundError) as err:
        FashionMNISTIDX(data_root=str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path) in msg and 'dataset-fashion-mnist' in msg
    assert 't10k-labels-idx1-ubyte' in msg and 'train-labels-idx1-ubyte' in msg


def test_mosaic_boxes_tight_and_classes(idx_root, tmp_path):
    paths = make_fashion_mosaic_coco(
        str(idx_root),
        str(tmp_path),
        num_train=12,
        num_val=6,
        canvas=64,
        items=(1, 1),
        scale=(20, 40),
        seed=0)
    for split, allowed in (('train', range(1, 8)), ('val', range(8, 11))):
        coco = COCO(paths[f'{split}_ann'])
        assert sorted(coco.getCatIds()) == list(range(1, 11))
        for info in coco.dataset['images']:
            img = cv2.imread(f"{paths[f'{split}_img']}/{info['file_name']}",
                             cv2.IMREAD_GRAYSCALE)
            (ann, ) = coco.loadAnns(coco.getAnnIds(imgIds=info['id']))
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64
            inside = np.zeros_like(img, bool)
            inside[y:y + h, x:x + w] = True
            # nothing outside the box
            assert not img[~inside].any()
            for edge in (img[y, x:x + w], img[y + h - 1, x:x + w],
                         img[y:y + h, x], img[y:y + h, x + w - 1]):
                # every box edge touches the item
                assert edge.any()
            assert ann['area'] == np.count_nonzero(img)
            assert ann['category_id'] in allowed
            # class = item class
            assert img.max() == 100 + 10 * (ann['category_id'] - 1)


def test_mosaic_deterministic_idempotent_self_ap(idx_root, tmp_path):
    kw = dict(
        num_train=10,
        num_val=4,
        canvas=64,
        items=(1, 4),
        scale=(16, 32),
        seed=5)
    a = make_fashion_mosaic_coco(str(idx_root), str(tmp_path / 'a'), **kw)
    b = make_fashion_mosaic_coco(str(idx_root), str(tmp_path / 'b'), **kw)
    for split in ('train', 'val'):
        with open(a[f'{split}_ann'], 'rb') as fa, open(b[f'{split}_ann'],
                                                       'rb') as fb:
            assert fa.read() == fb.read()
    stamp = (tmp_path / 'a' / 'meta.json').stat().st_mtime_ns
    make_fashion_mosaic_coco(str(idx_root), str(tmp_path / 'a'), **kw)
    assert (tmp_path / 'a' / 'meta.json').stat().st_mtime_ns == stamp
    with open(a['meta']) as f:
        # no machine paths in the set
        assert str(tmp_path) not in f.read()
    gt = COCO(a['train_ann'])
    anns = gt.dataset['annotations']
    assert len(anns) > 10 and max(
        len(gt.getAnnIds(imgIds=i)) for i in gt.getImgIds()) <= 4
    dets = [
        dict(
            image_id=x['image_id'],
            category_id=x['category_id'],
            bbox=x['bbox'],
            score=1.0) for x in anns
    ]
    ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='scale'):
        make_fashion_mosaic_coco(
            str(idx_root), str(tmp_path / 'c'), canvas=32, scale=(8, 40))
