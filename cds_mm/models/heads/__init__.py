from .cds_head import CDSHead
from .instance_cds_head import InstanceCDSHead
from .projectors import MLPProjector, SepConvProjector

__all__ = ['CDSHead', 'InstanceCDSHead', 'MLPProjector', 'SepConvProjector']
