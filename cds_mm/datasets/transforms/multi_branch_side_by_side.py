"""mmdet's ``MultiBranch`` with the branches packed side by side, to browse
a two-view detection pipeline with mmdet's ``browse_dataset.py``."""
from typing import List, Optional

import torch
from mmdet.datasets.transforms import MultiBranch
from mmdet.registry import TRANSFORMS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import BaseBoxes
from mmengine.structures import InstanceData


@TRANSFORMS.register_module()
class MultiBranchSideBySide(MultiBranch):
    """``MultiBranch`` whose branches come out as one image, side by side.

    It takes ``MultiBranch``'s arguments and runs the same branch pipelines
    (each ending in ``PackDetInputs``), then packs their outputs as one
    sample: the branch images left to right (``branch_field`` order) on one
    canvas, and the first branch's data sample whose ``gt_instances`` hold
    every branch's boxes, shifted onto that branch's part of the canvas. A
    single-view consumer, such as mmdet's ``browse_dataset.py``, then shows
    the views as the model sees them, next to each other::

        python tools/analysis_tools/browse_dataset.py CONFIG \\
            --cfg-options train_dataloader.dataset.pipeline.4.type=\\
        MultiBranchSideBySide

    where ``4`` is the index of ``MultiBranch`` in the train pipeline. For
    browsing only: the CDS detector trains on ``MultiBranch``'s branches.

    Args:
        branch_field (list[str]): The branches, as for ``MultiBranch``.
        gap (int): Pixels between two branch images. Defaults to 4.
        pad_value (int): Value of the canvas outside the images (the gap,
            and below a shorter image). Defaults to 255.
        **branch_pipelines (list[dict]): One pipeline per branch, as for
            ``MultiBranch``.

    Shapes:
        return['inputs']: (C, max(H_b), sum(W_b) + gap * (B - 1)), the dtype
            of the branch images, for B branches of (C, H_b, W_b).
    """

    def __init__(self,
                 branch_field: List[str],
                 gap: int = 4,
                 pad_value: int = 255,
                 **branch_pipelines: dict) -> None:
        if gap < 0:
            raise ValueError(f'MultiBranchSideBySide.gap must be >= 0, '
                             f'got {gap}')
        super().__init__(branch_field, **branch_pipelines)
        self.gap = gap
        self.pad_value = pad_value

    def transform(self, results: dict) -> Optional[dict]:
        """Run every branch and pack them side by side."""
        packed = super().transform(results)
        if packed is None:
            return None
        branches = [
            b for b in self.branch_field if packed['inputs'].get(b) is not None
        ]
        images = [packed['inputs'][b] for b in branches]
        samples = [packed['data_samples'][b] for b in branches]
        height = max(img.shape[1] for img in images)
        width = sum(img.shape[2] for img in images) + self.gap * (
            len(images) - 1)
        canvas = images[0].new_full((images[0].shape[0], height, width),
                                    self.pad_value)
        instances, left = [], 0
        for img, sample in zip(images, samples):
            h, w = img.shape[1:]
            canvas[:, :h, left:left + w] = img
            instances.append(_shifted(sample.gt_instances, left))
            left += w + self.gap
        sample = DetDataSample(metainfo=samples[0].metainfo)
        sample.gt_instances = InstanceData.cat(instances)
        sample.set_metainfo(dict(img_shape=(height, width), branches=branches))
        return dict(inputs=canvas, data_samples=sample)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(branch_pipelines='
                f'{list(self.branch_pipelines)}, gap={self.gap})')


def _shifted(instances: InstanceData, dx: int) -> InstanceData:
    """A copy of ``instances`` with its boxes moved ``dx`` pixels right."""
    out = instances.clone()
    if 'bboxes' in out:
        boxes = out.bboxes.clone()
        if isinstance(boxes, BaseBoxes):
            boxes.translate_([dx, 0])
        else:  # (K, 4) x1, y1, x2, y2
            boxes = boxes + torch.tensor([dx, 0, dx, 0], dtype=boxes.dtype)
        out.bboxes = boxes
    return out
