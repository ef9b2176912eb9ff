"""mmdet's ``PackDetInputs`` that also packs the boxes' instance ids."""
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackDetInputsWithIds(PackDetInputs):
    """``PackDetInputs`` with ``results['gt_instance_ids']`` (from
    :class:`AddInstanceIds`) packed as ``gt_instances.instance_ids``
    (ignored boxes' ids go to ``ignored_instances``, as their boxes do).

    Raises ``ValueError`` when the branch holds another number of boxes than
    of ids: a transform between :class:`AddInstanceIds` and this one dropped
    or added boxes without their ids, so no box could be named safely.

    Args:
        **kwargs: Arguments of mmdet's ``PackDetInputs``.

    Shapes:
        return['data_samples'].gt_instances.instance_ids: (M,) int64.
    """
    mapping_table = dict(
        PackDetInputs.mapping_table, gt_instance_ids='instance_ids')

    def transform(self, results: dict) -> dict:
        ids, boxes = results.get('gt_instance_ids'), results.get('gt_bboxes')
        if ids is not None and len(ids) != (0
                                            if boxes is None else len(boxes)):
            raise ValueError(
                f'PackDetInputsWithIds: {results.get("img_path", "an image")} '
                f'holds {0 if boxes is None else len(boxes)} boxes but '
                f'{len(ids)} instance ids: a transform after AddInstanceIds '
                'dropped or added boxes without their ids (mmdet\'s crops '
                'and FilterAnnotations do); move it before AddInstanceIds')
        return super().transform(results)
