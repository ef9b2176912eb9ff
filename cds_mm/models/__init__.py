from . import classifiers, detectors, heads, losses, taps, utils  # noqa: F401
