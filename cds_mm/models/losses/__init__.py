from .kd_loss import KDLoss
from .supcon_loss import SupConLoss

__all__ = ['KDLoss', 'SupConLoss']
