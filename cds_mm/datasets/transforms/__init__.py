"""Transforms for the two-view pipelines that upstream wrappers cannot
express (mmdet's ``MultiBranch`` and mmpretrain's ``MultiView`` are reused
for training)."""
from ...utils import has_library

__all__ = []

if has_library('mmdet'):
    from .multi_branch_side_by_side import MultiBranchSideBySide
    __all__ += ['MultiBranchSideBySide']
