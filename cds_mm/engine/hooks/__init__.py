from .cds_weight_hook import CDSWeightHook, cds_weight_scale
from .check_finite_loss_hook import CheckFiniteLossHook
from .data_root_check_hook import DataRootCheckHook

__all__ = [
    'CDSWeightHook', 'cds_weight_scale', 'CheckFiniteLossHook',
    'DataRootCheckHook'
]
