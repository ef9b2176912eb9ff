from ...utils import has_library
from .batch_photometric import BatchPhotometric

__all__ = ['BatchPhotometric']

if has_library('mmpretrain'):
    from .multi_view_cls_data_preprocessor import \
        MultiViewClsDataPreprocessor  # noqa: F401
    __all__ += ['MultiViewClsDataPreprocessor']
if has_library('mmdet'):
    from .branch_batch_augments_data_preprocessor import \
        BranchBatchAugmentsDataPreprocessor  # noqa: F401
    from .multi_view_det_data_preprocessor import \
        MultiViewDetDataPreprocessor  # noqa: F401
    __all__ += [
        'MultiViewDetDataPreprocessor', 'BranchBatchAugmentsDataPreprocessor'
    ]
