"""compat.atomic_checkpoint_save: a failed or killed checkpoint write never
leaves half a file.

mmengine 0.10.7's ``save_checkpoint`` serialises into memory, then
``LocalBackend.put`` writes the bytes; a failure can hit either step. A failing
``torch.save`` is harmless already (nothing reaches the disk); the failing file
write, the SIGKILL and the same-name overwrite cases fail on the unpatched
``put``, which truncates the target in place.
"""
import builtins
import errno
import io
import multiprocessing as mp
import os
import signal

import pytest
import torch
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.runner.checkpoint import save_checkpoint

import cds_mm.compat  # noqa: F401  (the opt-in fixes)
from cds_mm import compat

OLD = {
    'state_dict': {
        'w': torch.arange(4096, dtype=torch.float32)
    },
    'meta': {
        'iter': 4
    }
}
NEW = {
    'state_dict': {
        'w': -torch.arange(4096, dtype=torch.float32)
    },
    'meta': {
        'iter': 8
    }
}


def _raise_disk_full():
    raise OSError(errno.ENOSPC, 'No space left on device (simulated)')


class _HalfWriter:
    """A binary file whose ``write`` writes half the bytes, flushes, then calls
    ``on_half``."""

    def __init__(self, f, on_half):
        self._f, self._on_half = f, on_half

    def write(self, data):
        self._f.write(bytes(data[:len(data) // 2]))
        self._f.flush()
        self._on_half()

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


def _break_file_writes(monkeypatch, root, on_half):
    """Every binary write-mode ``open`` under ``root`` gets a ``_HalfWriter``.
    """
    real_open = builtins.open

    def fake_open(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if 'w' in mode and 'b' in mode and str(file).startswith(str(root)):
            return _HalfWriter(f, on_half)
        return f

    monkeypatch.setattr(builtins, 'open', fake_open)


def _break_torch_save(monkeypatch):
    """``torch.save`` writes half of the real bytes into its file object, then
    raises."""
    real_save = torch.save

    def fake_save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
        raise RuntimeError('torch.save interrupted (simulated)')

    monkeypatch.setattr(torch, 'save', fake_save)


def _assert_holds(path, ckpt):
    got = torch.load(path)
    assert got['meta'] == ckpt['meta']
    torch.testing.assert_close(
        got['state_dict']['w'], ckpt['state_dict']['w'], rtol=0, atol=0)


def test_shim_is_applied_once():
    assert LocalBackend.put.__wrapped__ is not None
    patched = LocalBackend.put
    compat.atomic_checkpoint_save()
    compat.apply_all()
    assert LocalBackend.put is patched  # not wrapped twice


@pytest.mark.parametrize('failure', ['torch.save', 'file write'])
@pytest.mark.parametrize('same_name', [False, True])
def test_failed_save_leaves_no_file_and_previous_intact(
        tmp_path, monkeypatch, failure, same_name):
    prev, target = tmp_path / 'iter_4.pth', tmp_path / (
        'iter_4.pth' if same_name else 'iter_8.pth')
    save_checkpoint(OLD, str(prev))
    with monkeypatch.context() as m:
        if failure == 'torch.save':
            _break_torch_save(m)
            expected = RuntimeError
        else:
            _break_file_writes(m, tmp_path, _raise_disk_full)
            expected = OSError
        with pytest.raises(expected, match='simulated'):
            save_checkpoint(NEW, str(target))
    _assert_holds(prev, OLD)
    # no target, no .tmp
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_4.pth']


def test_unpatched_put_truncates_in_place(tmp_path, monkeypatch):
    # the reason for the shim: mmengine's own put leaves half a checkpoint at
    # the target
    path = tmp_path / 'iter_4.pth'
    save_checkpoint(OLD, str(path))
    buf = io.BytesIO()
    torch.save(NEW, buf)
    _break_file_writes(monkeypatch, tmp_path, _raise_disk_full)
    with pytest.raises(OSError, match='simulated'):
        LocalBackend.put.__wrapped__(LocalBackend(), buf.getvalue(), str(path))
    assert path.stat().st_size == len(buf.getvalue()) // 2
    with pytest.raises(Exception):
        torch.load(path)


def _save_then_get_killed(tmp_dir):
    """Child: save NEW as iter_8.pth and receive SIGKILL after half of the
    bytes are on disk."""
    mp_patch = pytest.MonkeyPatch()
    _break_file_writes(mp_patch, tmp_dir,
                       lambda: os.kill(os.getpid(), signal.SIGKILL))
    save_checkpoint(NEW, os.path.join(tmp_dir, 'iter_8.pth'))
    os._exit(0)  # not reached


@pytest.mark.skipif(
    'fork' not in mp.get_all_start_methods(), reason='needs fork')
def test_sigkill_mid_write(tmp_path):
    save_checkpoint(OLD, str(tmp_path / 'iter_4.pth'))
    child = mp.get_context('fork').Process(
        target=_save_then_get_killed, args=(str(tmp_path), ))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    # no cleanup ran: the half-written bytes stay in the .tmp file, never under
    # the real name
    assert not (tmp_path / 'iter_8.pth').exists()
    assert 0 < (tmp_path / 'iter_8.pth.tmp').stat().st_size < 2 * 4096 * 4
    _assert_holds(tmp_path / 'iter_4.pth', OLD)
    # the next save of the same name replaces the leftover
    save_checkpoint(NEW, str(tmp_path / 'iter_8.pth'))
    _assert_holds(tmp_path / 'iter_8.pth', NEW)
    assert sorted(p.name
                  for p in tmp_path.iterdir()) == ['iter_4.pth', 'iter_8.pth']


def test_put_writes_through_symlink_and_makes_folders(tmp_path):
    real = tmp_path / 'store' / 'real.pth'
    save_checkpoint(OLD, str(real))  # creates 'store/'
    link = tmp_path / 'latest.pth'
    link.symlink_to(real)
    save_checkpoint(NEW, str(link))
    assert link.is_symlink() and os.readlink(link) == str(real)
    _assert_holds(real, NEW)
