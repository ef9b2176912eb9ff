"""Build a wrapper's parts in the registry scope of the wrapper."""
from contextlib import contextmanager
from typing import Iterator

from mmengine.registry import DefaultScope, Registry


@contextmanager
def build_scope(registry: Registry) -> Iterator[None]:
    """Make ``registry``'s scope the default one, unless it already covers it.

    Inside the block, ``mmengine.registry.MODELS.build(cfg)`` (and
    ``switch_scope_and_registry(None)``) resolves types through ``registry``,
    so a part registered only in mmpretrain's (or mmdet's) ``MODELS`` is found
    when ``CDSClassifier`` (``CDSDetector``) builds it, whatever scope another
    build left as the default. A default scope whose registry descends from
    ``registry`` (a downstream project's) is kept: it sees ``registry`` too.

    Args:
        registry (Registry): The wrapper's registry, e.g. mmpretrain's
            ``MODELS``.
    """
    current = DefaultScope.get_current_instance()
    if current is not None and _descends(
            registry._get_root_registry()._search_child(current.scope_name),
            registry):
        yield
        return
    with DefaultScope.overwrite_default_scope(registry.scope):
        yield


def _descends(child, ancestor: Registry) -> bool:
    while child is not None:
        if child is ancestor:
            return True
        child = child.parent
    return False
