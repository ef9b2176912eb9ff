from .cds_detector import CDSDetector

__all__ = ['CDSDetector']
