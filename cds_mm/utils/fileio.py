"""Atomic file writes: a reader sees the old file or the new one, never half.
"""
import os
import os.path as osp
from contextlib import contextmanager
from typing import IO, Iterator


@contextmanager
def atomic_write(path: str, mode: str = 'w') -> Iterator[IO]:
    """Open ``path + '.tmp'`` for writing and rename it over ``path`` on exit.

    The temporary file sits in the same folder (so the rename is atomic on
    POSIX and Windows), is flushed and fsynced before the rename, and is
    removed if the block raises; the folder is fsynced after the rename. A
    symlinked ``path`` is written through.

    Args:
        path (str): The file to write.
        mode (str): ``'w'`` (text) or ``'wb'`` (bytes). Defaults to ``'w'``.

    Example:
        >>> with atomic_write('results.json') as f:
        ...     json.dump(results, f)
    """
    if mode not in ('w', 'wb'):
        raise ValueError(
            f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = osp.realpath(path)
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.lexists(tmp):
            os.remove(tmp)
        raise
    _fsync_folder(osp.dirname(path))


def _fsync_folder(folder: str) -> None:
    """Make a rename durable (POSIX; best effort, no-op on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (AttributeError, OSError):
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)
