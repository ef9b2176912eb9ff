"""Transforms for the two-view pipelines that upstream wrappers cannot
express (mmdet's ``MultiBranch`` and mmpretrain's ``MultiView`` are reused
for training)."""
from ...utils import has_library

__all__ = []

if has_library('mmdet'):
    from .add_instance_ids import AddInstanceIds
    from .multi_branch_side_by_side import MultiBranchSideBySide
    from .pack_det_inputs_with_ids import PackDetInputsWithIds
    __all__ += [
        'AddInstanceIds', 'MultiBranchSideBySide', 'PackDetInputsWithIds'
    ]
