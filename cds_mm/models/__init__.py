from ..utils import has_library
from . import data_preprocessors, heads, losses, taps, utils  # noqa: F401

if has_library('mmpretrain'):
    from . import classifiers  # noqa: F401
if has_library('mmdet'):
    from . import detectors  # noqa: F401
