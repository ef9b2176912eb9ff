"""Import the parts of cds_mm whose OpenMMLab library is present."""
import importlib
import importlib.util
import warnings
from typing import Dict

#: Why a library's components are not registered: {library: reason}.
MISSING: Dict[str, str] = {}


def has_library(name: str) -> bool:
    """Whether ``name`` (``'mmdet'`` or ``'mmpretrain'``) imports here.

    A library that is not installed is skipped silently: a classification-
    only environment needs no mmdet. One that is installed but fails to
    import (e.g. mmdet asserting its mmcv range) is skipped with a warning
    that gives the reason, so its components' absence is explained.
    """
    if name in MISSING:
        return False
    if importlib.util.find_spec(name) is None:
        MISSING[name] = f'{name} is not installed'
        return False
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: B902 (mmdet asserts its mmcv range)
        MISSING[name] = f'{name} failed to import: {type(e).__name__}: {e}'
        warnings.warn(f'cds_mm: components that need {name} are not '
                      f'registered ({MISSING[name]})')
        return False
    return True
