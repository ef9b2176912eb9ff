from .cds_head import CDSHead
from .instance_cds_head import InstanceCDSHead
from .projectors import MLPProjector, SepConvProjector
from .proposal_cds_head import ProposalCDSHead

__all__ = [
    'CDSHead', 'InstanceCDSHead', 'MLPProjector', 'ProposalCDSHead',
    'SepConvProjector'
]
