from .cds_weight_hook import CDSWeightHook, cds_weight_scale

__all__ = ['CDSWeightHook', 'cds_weight_scale']
