from .cds_classifier import CDSClassifier
from .distilled_cds_classifier import DistilledCDSClassifier
from .semi_cds_classifier import SemiCDSClassifier

__all__ = ['CDSClassifier', 'DistilledCDSClassifier', 'SemiCDSClassifier']
