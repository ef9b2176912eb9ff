"""cds_mm: Contrastive Deep Supervision for mmpretrain and mmdet models.

Importing the package registers its components and does nothing else, so a
config needs only ``custom_imports = dict(imports=['cds_mm'])``. The
classification components register when mmpretrain imports, the detection
ones when mmdet does; either library alone is enough. The fixes to the stack
(``cds_mm.compat``) are opt-in: our ``tools/*.py`` apply them, and upstream
tools get them from ``custom_imports=dict(imports=['cds_mm',
'cds_mm.compat'])``.
"""
from . import datasets, engine, evaluation, models  # noqa: F401
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
