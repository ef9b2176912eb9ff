"""Helpers shared by several cds_mm files (no registered components)."""
from .fileio import atomic_write
from .imports import has_library

__all__ = ['atomic_write', 'has_library']
