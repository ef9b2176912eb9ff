"""What every shim shares: run once, and only on the versions it fixes."""
import importlib
from typing import Optional, Set

from mmengine.utils import digit_version

_APPLIED: Set[str] = set()


def once(name: str) -> bool:
    """Return True the first time ``name`` is seen (keeps shims idempotent)."""
    if name in _APPLIED:
        return False
    _APPLIED.add(name)
    return True


def version_in(package: str,
               min_version: Optional[str] = None,
               max_version: Optional[str] = None) -> bool:
    """Whether ``package`` imports and ``min_version <= version <= max``.

    Args:
        package (str): Importable name with a ``__version__``.
        min_version (str, optional): Lowest affected version. Defaults to
            None (no bound).
        max_version (str, optional): Highest affected version. Defaults to
            None (no bound).
    """
    try:
        version = digit_version(importlib.import_module(package).__version__)
    except ImportError:
        return False
    if min_version is not None and version < digit_version(min_version):
        return False
    return max_version is None or version <= digit_version(max_version)


def has_accelerator() -> bool:
    """Whether mmengine sees a GPU, NPU, MLU or MUSA device."""
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())
