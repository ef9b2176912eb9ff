import collections
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from cds_mm.datasets import make_dense_coco
from cds_mm.datasets.dense_objects import render_dense


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture(scope='module')
def dense(tmp_path_factory):
    out = tmp_path_factory.mktemp('dense') / 'set'
    return make_dense_coco(
        str(out),
        num_train=6,
        num_val=2,
        img_size=96,
        seed=5,
        min_objects=4,
        max_objects=9,
        side_range=(0.08, 0.2))


def test_coco_fields_and_counts(dense):
    from test_shapes import check_coco
    for split, n_img in (('train', 6), ('val', 2)):
        coco = check_coco(dense[f'{split}_ann'], dense[f'{split}_img'], 1, 96)
        assert coco.cats[1]['name'] == 'object'
        counts = collections.Counter(a['image_id']
                                     for a in coco.dataset['annotations'])
        assert len(coco.dataset['images']) == n_img
        # every image got the objects it asked for (4-9: placements at
        # this size always succeed within the tries)
        assert all(4 <= counts[i] <= 9 for i in coco.getImgIds()), counts
    train = COCO(dense['train_ann'])
    assert len({len(train.getAnnIds(imgIds=i))
                for i in train.getImgIds()}) > 1  # counts vary


def test_boxes_are_tight_around_visible_pixels():
    rng = np.random.default_rng(0)
    img, objects = render_dense(
        rng, 128, 12, side_range=(0.1, 0.25), min_visible=0.6)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert len(objects) == 12
    for cat, (x, y, w, h), area in objects:
        assert cat == 1
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
        # sides drawn in [0.1, 0.25] * 128 + 2 px; the visible part is
        # never larger
        assert max(w, h) <= 0.25 * 128 + 3
        assert 0 < area <= w * h


def test_occlusion_is_bounded():
    # min_visible=1 forbids overlap: visible areas of one image sum to the
    # union, so no box pair may share a visible pixel; with 0.3, objects do
    # overlap at this density
    def overlaps(min_visible):
        n = 0
        for seed in range(4):
            _, objects = render_dense(
                np.random.default_rng(seed),
                96,
                14,
                side_range=(0.15, 0.25),
                min_visible=min_visible)
            boxes = [b for _, b, _ in objects]
            n += sum(
                min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0])
                and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])
                for i, a in enumerate(boxes) for b in boxes[i + 1:])
        return n

    assert overlaps(0.3) > 0
    # boxes of irregular blobs can touch without the blobs overlapping, but
    # far less often than with occlusion allowed
    assert overlaps(1.0) < overlaps(0.3)


def test_deterministic_per_seed(dense, tmp_path):
    kwargs = dict(
        num_train=6,
        num_val=2,
        img_size=96,
        min_objects=4,
        max_objects=9,
        side_range=(0.08, 0.2))
    again = make_dense_coco(str(tmp_path / 'a'), seed=5, **kwargs)
    for split in ('train', 'val'):
        assert _read(again[f'{split}_ann']) == _read(dense[f'{split}_ann'])
    assert _read(again['train_img'] +
                 '/000003.png') == _read(dense['train_img'] + '/000003.png')
    other = make_dense_coco(str(tmp_path / 'b'), seed=6, **kwargs)
    assert _read(other['train_ann']) != _read(dense['train_ann'])
    meta = json.loads(_read(again['meta']))
    assert meta['params']['kind'] == 'dense_objects'
    assert meta['params']['seed'] == 5


@pytest.mark.parametrize('kwargs, match', [
    (dict(img_size=32), 'img_size'),
    (dict(min_objects=0), 'min_objects'),
    (dict(min_objects=5, max_objects=4), 'min_objects'),
    (dict(side_range=(0.2, 0.1)), 'side_range'),
    (dict(min_visible=0.0), 'min_visible'),
    (dict(num_train=-1), 'num_train'),
])
def test_bad_args(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dense_coco(str(tmp_path), **kwargs)
