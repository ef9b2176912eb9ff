from . import (classifiers, data_preprocessors, detectors, heads, losses,  # noqa: F401
               taps, utils)
