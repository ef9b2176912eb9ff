"""AddInstanceIds + PackDetInputsWithIds: box identity carried through
mmdet's MultiBranch, so InstanceCDSHead pairs a box moved by one branch."""
import copy

import numpy as np
import pytest
import torch
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.registry import DefaultScope

import cds_mm  # noqa: F401
from cds_mm.models.heads import InstanceCDSHead

BOXES = [[2., 4., 30., 20.], [40., 10., 90., 60.], [10., 30., 20., 62.]]


def results():
    return dict(
        img=np.random.RandomState(0).randint(0, 255, (64, 96, 3), np.uint8),
        img_shape=(64, 96),
        ori_shape=(64, 96),
        img_id=0,
        img_path='a.png',
        scale_factor=(1., 1.),
        flip=False,
        flip_direction=None,
        gt_bboxes=HorizontalBoxes(torch.tensor(BOXES)),
        gt_bboxes_labels=np.array([0, 1, 2]),
        gt_ignore_flags=np.array([False, True, False]))


def pipeline(cds_branch):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return _pipeline(cds_branch)


def _pipeline(cds_branch):
    return [
        TRANSFORMS.build(dict(type='AddInstanceIds')),
        TRANSFORMS.build(
            dict(
                type='MultiBranch',
                branch_field=['main', 'cds'],
                main=[dict(type='PackDetInputsWithIds')],
                cds=cds_branch + [dict(type='PackDetInputsWithIds')]))
    ]


def run(transforms):
    out = results()
    for t in transforms:
        out = t(out)
    return out['data_samples']['main'], out['data_samples']['cds']


def test_a_flipped_branch_keeps_each_boxs_id_and_pairs_it():
    main, cds = run(pipeline([dict(type='RandomFlip', prob=1.0)]))
    # the ignored box (id 1) goes with the ignored instances in both views
    assert main.gt_instances.instance_ids.tolist() == [0, 2]
    assert cds.gt_instances.instance_ids.tolist() == [0, 2]
    assert main.ignored_instances.instance_ids.tolist() == [1]
    b1, b2 = main.gt_instances.bboxes.tensor, cds.gt_instances.bboxes.tensor
    flipped = b1[:, [2, 1, 0, 3]] * torch.tensor([-1., 1, -1, 1]) + \
        torch.tensor([96., 0, 96, 0])
    torch.testing.assert_close(b2, flipped)
    head = InstanceCDSHead(taps=['p'], in_channels=[4])
    ids = ([main.gt_instances.instance_ids], [cds.gt_instances.instance_ids])
    # view 2 listed in another order: the ids still pair box with box
    order = [1, 0]
    rois1, rois2, _ = head._select_boxes([b1], [b2[order]],
                                         [main.gt_instances.labels],
                                         (ids[0], [ids[1][0][order]]))
    torch.testing.assert_close(rois2[0], flipped)
    with pytest.raises(ValueError, match='coordinate differs'):
        head._select_boxes([b1], [b2], [main.gt_instances.labels])


def test_a_branch_that_drops_boxes_without_their_ids_is_refused():
    drop_small = dict(
        type='FilterAnnotations', min_gt_bbox_wh=(12, 12), keep_empty=False)
    with pytest.raises(
            ValueError,
            match='a.png holds 2 boxes but 3 instance '
            'ids: a transform after AddInstanceIds dropped'):
        run(pipeline([drop_small]))
    # placed before AddInstanceIds, the same filter is fine
    transforms = [TRANSFORMS.build(copy.deepcopy(drop_small))] + pipeline([])
    main, cds = run(transforms)
    assert cds.gt_instances.instance_ids.tolist() == [0]
