"""Atomic local checkpoint writes for mmengine <= 0.10.7."""
from ..utils.fileio import atomic_write
from .utils import once, version_in


def atomic_checkpoint_save() -> None:
    """Make mmengine's local checkpoint writes atomic: the old file or the new
    one, never half.

    Breaks on: mmengine <= 0.10.7. ``save_checkpoint`` (used by
    ``Runner.save_checkpoint``, so by ``CheckpointHook``, ``EMAHook``
    checkpoints and ``_publish_model``) serialises with ``torch.save`` into
    memory and hands the bytes to ``LocalBackend.put``, which opens the target
    with ``'wb'`` (truncating it) and writes in place. A SIGKILL, an OOM kill
    or a full disk during that write leaves a truncated ``iter_N.pth`` that
    fails to load, or destroys the previous content of a file saved again under
    the same name. Fix: ``LocalBackend.put`` (the narrowest point every local
    checkpoint write goes through; ``HardDiskBackend`` inherits it) writes
    ``path + '.tmp'`` in the same folder, flushes and fsyncs it,
    ``os.replace``-s it over ``path`` (atomic on POSIX and Windows) and fsyncs
    the folder. On an exception the ``.tmp`` file is removed; a SIGKILL can
    leave it behind, and the next write to ``path`` replaces it. A symlinked
    ``path`` is written through, as before. Other ``put`` callers
    (``mmengine.dump`` to a local path) become atomic too.
    """
    if not version_in(
            'mmengine',
            max_version='0.10.7') or not once('atomic_checkpoint_save'):
        return
    from mmengine.fileio.backends.local_backend import LocalBackend
    original = LocalBackend.put

    def put(self, obj, filepath):
        with atomic_write(filepath, 'wb') as f:
            f.write(obj)

    put.__doc__ = original.__doc__
    put.__wrapped__ = original
    LocalBackend.put = put
