"""Name each annotated box, so both views of a detection image pair them."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AddInstanceIds(BaseTransform):
    """Give every box an id: ``results['gt_instance_ids'] = 0 .. M-1``.

    Put it before ``MultiBranch`` (after the shared geometry) and end each
    branch with :class:`PackDetInputsWithIds`: the ids reach
    ``gt_instances.instance_ids`` of both branches, and ``InstanceCDSHead``
    pairs each box with the box of the same id in the other view, also when
    a branch moved the boxes (its own flip or resize). A branch transform
    that drops boxes (mmdet's crops, ``FilterAnnotations``) does not drop
    their ids; :class:`PackDetInputsWithIds` then refuses the sample.

    Example:
        >>> train_pipeline = [
        ...     dict(type='LoadImageFromFile'),
        ...     dict(type='LoadAnnotations', with_bbox=True),
        ...     dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        ...     dict(type='AddInstanceIds'),
        ...     dict(type='MultiBranch', branch_field=['main', 'cds'],
        ...          main=[dict(type='PackDetInputsWithIds')],
        ...          cds=[dict(type='RandomFlip', prob=0.5),
        ...               dict(type='PackDetInputsWithIds')])]

    Shapes:
        results['gt_instance_ids']: (M,) int64, M = len(gt_bboxes).
    """

    def transform(self, results: dict) -> dict:
        boxes = results.get('gt_bboxes')
        results['gt_instance_ids'] = np.arange(
            0 if boxes is None else len(boxes), dtype=np.int64)
        return results
