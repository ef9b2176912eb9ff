"""cds_mm: Contrastive Deep Supervision for mmpretrain classifiers and mmdet detectors.

Importing the package registers every component, so a config needs only
``custom_imports = dict(imports=['cds_mm'], allow_failed_imports=False)``.
"""
from . import compat  # noqa: F401,I001  (first: the stack shims)
from . import datasets, engine, evaluation, models  # noqa: F401

__version__ = '0.1.0'
