"""Pair each ground-truth box of view 1 with the same box in view 2."""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

HINT = ("keep every transform that moves, drops or adds boxes before "
        "MultiBranch (shared by both views) and only photometric ones in the "
        "'cds' branch, or name the boxes: AddInstanceIds before MultiBranch "
        'and PackDetInputsWithIds at the end of each branch')


def pair_boxes(boxes1: Tensor,
               boxes2: Tensor,
               ids1: Optional[Tensor] = None,
               ids2: Optional[Tensor] = None,
               shape1: Optional[Sequence[int]] = None,
               shape2: Optional[Sequence[int]] = None,
               image: int = 0,
               rtol: float = 1e-3) -> Tuple[Tensor, Tensor]:
    """The rows of the same boxes in two views of one image.

    The identity of a box is what the pipeline carries:

    - ``instance_ids`` in both views: the boxes with the same id pair up
      (a box that one view lost has no partner and is left out);
    - no ids (the usual two-view detection pipeline, where view 2 differs
      from view 1 only photometrically): the boxes must be the same boxes in
      the same order, which is checked: equal counts and equal coordinates
      after scaling view 1's boxes per axis by ``shape2 / shape1`` (a batch
      resize of one branch), within ``rtol`` of the image side.

    Anything else cannot be paired safely and raises, so no box is ever
    contrasted with another one.

    Args:
        boxes1, boxes2 (Tensor): x1y1x2y2 boxes of view 1 and view 2.
        ids1, ids2 (Tensor, optional): Identity of each box per view.
            Defaults to None.
        shape1, shape2 (Sequence[int], optional): (H, W) of each view's
            image; None: the same size. Defaults to None.
        image (int): The image's row in the batch, named in errors.
            Defaults to 0.
        rtol (float): Tolerance on coordinates, times the longer side of
            view 2. Defaults to 1e-3.

    Returns:
        tuple[Tensor, Tensor]: (K,) int64 rows into ``boxes1`` and into
        ``boxes2``, pair by pair.

    Raises:
        ValueError: If the boxes cannot be paired; the message names the
            image and the cause.

    Shapes:
        boxes1: (M1, 4); boxes2: (M2, 4); ids1: (M1,); ids2: (M2,).
    """
    where = f'InstanceCDSHead: image {image} of the batch'
    if (ids1 is None) != (ids2 is None):
        raise ValueError(
            f"{where}: gt_instances.instance_ids is set in view "
            f"{1 if ids1 is not None else 2} only; set it in both branches")
    if ids1 is not None:
        for v, (ids, boxes) in enumerate(((ids1, boxes1), (ids2, boxes2)), 1):
            if ids.shape != (len(boxes), ):
                raise ValueError(
                    f'{where}: view {v} holds {len(boxes)} boxes but '
                    f'instance_ids of shape {tuple(ids.shape)}')
            if ids.unique().numel() != ids.numel():
                raise ValueError(f'{where}: view {v} repeats an instance id '
                                 f'({ids.tolist()}); each box needs its own')
        return (ids1.to(
            ids2.device)[:, None] == ids2[None, :]).nonzero(as_tuple=True)
    if len(boxes1) != len(boxes2):
        raise ValueError(
            f'{where}: view 1 holds {len(boxes1)} boxes and view 2 '
            f'{len(boxes2)}, so a transform of one branch dropped or added '
            f'boxes and the same box cannot be found by position: {HINT}')
    rows = torch.arange(len(boxes1), device=boxes1.device)
    if not len(boxes1):
        return rows, rows.to(boxes2.device)
    scale = boxes1.new_ones(4, dtype=torch.float32)
    if shape1 is not None and shape2 is not None:
        sy, sx = (float(b) / float(a) for a, b in zip(shape1, shape2))
        scale = torch.tensor([sx, sy, sx, sy], device=boxes1.device)
    side = max(shape2) if shape2 is not None else float(
        boxes2.float().abs().max().clamp(min=1))
    diff = (boxes1.float() * scale - boxes2.float().to(boxes1.device)).abs()
    if float(diff.max()) > rtol * side:
        raise ValueError(
            f'{where}: the boxes of view 2 are not those of view 1 (a '
            f'coordinate differs by {float(diff.max()):.2f} px), so a '
            "geometric transform of one branch moved them and the same box "
            f'cannot be found by position: {HINT}')
    return rows, rows.to(boxes2.device)
