from ..utils import has_library
from . import heads, losses, taps, utils  # noqa: F401

if has_library('mmpretrain'):
    from . import classifiers, data_preprocessors  # noqa: F401
if has_library('mmdet'):
    from . import detectors  # noqa: F401
