from .feature_taps import FeatureTaps

__all__ = ['FeatureTaps']
