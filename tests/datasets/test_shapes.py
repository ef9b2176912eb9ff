import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cds_mm.datasets import make_shapes_coco
from cds_mm.datasets.shapes import mask_box


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def self_eval_ap(ann_file):
    """bbox AP of the ground truth evaluated against itself (every box as a
    detection)."""
    gt = COCO(ann_file)
    dets = [
        dict(
            image_id=a['image_id'],
            category_id=a['category_id'],
            bbox=a['bbox'],
            score=1.0) for a in gt.dataset['annotations']
    ]
    ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[0]


def check_coco(ann_file, img_dir, num_classes, img_size):
    """Structural checks shared with the mosaic test; returns the loaded COCO.
    """
    coco = COCO(ann_file)
    cat_ids = sorted(coco.getCatIds())
    assert cat_ids == list(range(1, num_classes + 1))
    assert all(coco.cats[c]['name'] for c in cat_ids)
    for img in coco.dataset['images']:
        assert (img['width'], img['height']) == (img_size, img_size)
        pixels = cv2.imread(f"{img_dir}/{img['file_name']}")
        assert pixels.shape == (img_size, img_size, 3)
    for a in coco.dataset['annotations']:
        x, y, w, h = a['bbox']
        assert a['category_id'] in cat_ids and a['iscrowd'] == 0
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1
        assert x + w <= img_size and y + h <= img_size
        assert 0 < a['area'] <= w * h
    return coco


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes') / 'set'
    return make_shapes_coco(
        str(out), num_train=30, num_val=12, img_size=64, seed=3)


def test_coco_valid_and_self_eval_ap_is_one(shapes):
    for split in ('train', 'val'):
        coco = check_coco(shapes[f'{split}_ann'], shapes[f'{split}_img'], 3,
                          64)
        counts = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
        assert len(counts) == (30 if split == 'train' else 12)
        assert max(counts) <= 4
        # the box-free path is exercised
        assert sum(c == 0 for c in counts) >= 1
        assert sum(c > 0 for c in counts) > len(counts) // 2
    assert self_eval_ap(shapes['train_ann']) == pytest.approx(1.0)


def test_classes_and_box_fill(shapes):
    coco = COCO(shapes['train_ann'])
    classes = {
        coco.cats[a['category_id']]['name']
        for a in coco.dataset['annotations']
    }
    assert classes == {'rectangle', 'ellipse', 'triangle'}
    # area counts the shape's own pixels: a padded box would drive the fill
    # ratio down
    fill = [
        a['area'] / (a['bbox'][2] * a['bbox'][3])
        for a in coco.dataset['annotations']
    ]
    assert min(fill) > 0.1 and 0.45 < np.mean(fill) < 0.95


def test_mask_box_is_tight():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3] = mask[4, 3:9] = True
    assert mask_box(mask) == ([3, 2, 6, 3], 8)


def test_deterministic_and_idempotent(shapes, tmp_path):
    again = make_shapes_coco(
        str(tmp_path / 'b'), num_train=30, num_val=12, img_size=64, seed=3)
    for split in ('train', 'val'):
        assert _read(again[f'{split}_ann']) == _read(shapes[f'{split}_ann'])
    first = _read(again['train_img'] + '/000001.png')
    assert first == _read(shapes['train_img'] + '/000001.png')
    # idempotent: a complete set with the same params is left alone
    stamp = (tmp_path / 'b' / 'meta.json').stat().st_mtime_ns
    (tmp_path / 'b' / 'train' / '000001.png').write_bytes(b'kept')
    make_shapes_coco(
        str(tmp_path / 'b'), num_train=30, num_val=12, img_size=64, seed=3)
    assert (tmp_path / 'b' / 'meta.json').stat().st_mtime_ns == stamp
    assert _read(again['train_img'] + '/000001.png') == b'kept'
    # other params rebuild; another seed gives other boxes
    other = make_shapes_coco(
        str(tmp_path / 'b'), num_train=5, num_val=3, img_size=64, seed=4)
    meta = json.loads(_read(other['meta']))
    assert meta['params']['seed'] == 4 and meta['counts'] == dict(
        train=5, val=3)
    assert len(list((tmp_path / 'b' / 'train').iterdir())) == 5
    assert _read(other['val_ann']) != _read(shapes['val_ann'])


def test_incomplete_set_is_rebuilt(tmp_path):
    paths = make_shapes_coco(
        str(tmp_path), num_train=3, num_val=2, img_size=32)
    (tmp_path / 'val' / '000001.png').unlink()
    make_shapes_coco(str(tmp_path), num_train=3, num_val=2, img_size=32)
    assert (tmp_path / 'val' / '000001.png').is_file()
    assert json.loads(_read(
        paths['val_ann']))['images'][1]['file_name'] == '000001.png'


def test_jpg_and_bad_args(tmp_path):
    paths = make_shapes_coco(
        str(tmp_path), num_train=2, num_val=0, img_size=32, ext='jpg')
    assert cv2.imread(paths['train_img'] + '/000000.jpg').shape == (32, 32, 3)
    assert json.loads(_read(paths['val_ann']))['images'] == []
    with pytest.raises(ValueError, match='ext'):
        make_shapes_coco(str(tmp_path), ext='bmp')
    with pytest.raises(ValueError, match='img_size'):
        make_shapes_coco(str(tmp_path), img_size=8)
    with pytest.raises(ValueError, match='num_train'):
        make_shapes_coco(str(tmp_path), num_train=-1)


def test_max_objects_and_size_range(tmp_path):

    def boxes(name, **kwargs):
        paths = make_shapes_coco(
            str(tmp_path / name),
            num_train=24,
            num_val=0,
            img_size=64,
            empty_frac=0.0,
            **kwargs)
        coco = COCO(paths['train_ann'])
        return coco, [a['bbox'] for a in coco.dataset['annotations']]

    coco, one = boxes('one', max_objects=1)
    assert [len(coco.getAnnIds(imgIds=i))
            for i in coco.getImgIds()] == [1] * 24
    _, small = boxes('small', size_range=(0.1, 0.15))
    _, large = boxes('large', size_range=(0.45, 0.5))
    # sides are drawn in [low, high] * 64 + 2 px; rotation can only widen a
    # box's extent
    assert all(max(w, h) <= 2 * (0.15 * 64 + 2) for _, _, w, h in small)
    assert all(max(w, h) >= 0.45 * 64 for _, _, w, h in large)
    with pytest.raises(ValueError, match='max_objects'):
        make_shapes_coco(str(tmp_path / 'bad'), max_objects=0)
    with pytest.raises(ValueError, match='size_range'):
        make_shapes_coco(str(tmp_path / 'bad'), size_range=(0.5, 0.2))
