from .cds_weight_hook import CDSWeightHook, cds_weight_scale
from .check_finite_loss_hook import CheckFiniteLossHook

__all__ = ['CDSWeightHook', 'cds_weight_scale', 'CheckFiniteLossHook']
