"""Stack shims, in one place, applied once when ``cds_mm`` is imported.

Each shim is a small function that says what breaks, on which versions, and is idempotent.
``apply_all()`` runs them all; importing this module calls it.

Shims:
    allow_mmengine_checkpoint_globals: torch >= 2.6 loads with ``weights_only=True`` by default,
        while mmengine 0.10.7 calls ``torch.load`` without the argument (``load_from``,
        ``resume``, ``tools/test.py``). Checkpoints the mmengine ``Runner`` saved hold a
        ``message_hub`` with ``HistoryBuffer`` objects and numpy arrays / scalars, which the safe
        unpickler refuses. We allowlist exactly those globals; safe loading stays on.
    enable_cpu_amp_optim_wrapper: mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU/
        MUSA device, so ``--amp`` cannot run on a CPU-only machine. Without an accelerator it now
        builds with bf16 autocast and no loss scaling.
"""
import inspect
import pickle

import numpy as np
import torch

_APPLIED = set()

# numpy dtype classes holding plain data; object, void (structured) and variable-width string
# dtypes are left out on purpose: mmengine checkpoints hold float64 / int64 arrays and scalars.
_NUMPY_PLAIN_DTYPES = (
    'BoolDType', 'Int8DType', 'Int16DType', 'Int32DType', 'Int64DType', 'UInt8DType',
    'UInt16DType', 'UInt32DType', 'UInt64DType', 'ByteDType', 'UByteDType', 'ShortDType',
    'UShortDType', 'IntDType', 'UIntDType', 'LongDType', 'ULongDType', 'LongLongDType',
    'ULongLongDType', 'Float16DType', 'Float32DType', 'Float64DType', 'LongDoubleDType',
    'Complex64DType', 'Complex128DType', 'CLongDoubleDType', 'BytesDType', 'StrDType',
    'DateTime64DType', 'TimeDelta64DType')


def _once(name: str) -> bool:
    """Return True the first time ``name`` is seen (makes every shim idempotent)."""
    if name in _APPLIED:
        return False
    _APPLIED.add(name)
    return True


def _history_buffer_getattr(obj, name: str):
    """``getattr`` restricted to ``HistoryBuffer``'s public methods.

    ``HistoryBuffer.__getstate__`` stores its ``_statistics_methods`` (``HistoryBuffer.min``,
    ``.max``, ``.current``, ``.mean``), which pickle writes as ``getattr(HistoryBuffer, 'min')``.
    Allowlisting the real ``builtins.getattr`` would let a checkpoint fetch any attribute of any
    allowlisted object, so the name ``builtins.getattr`` maps to this function instead.
    """
    from mmengine.logging import HistoryBuffer
    if not (isinstance(obj, type) and issubclass(obj, HistoryBuffer)):
        raise pickle.UnpicklingError(
            f'weights_only load: getattr is only allowed on HistoryBuffer, got {obj!r}')
    value = getattr(obj, name, None) if not name.startswith('_') else None
    if not inspect.isfunction(value):
        raise pickle.UnpicklingError(
            f'weights_only load: HistoryBuffer.{name} is not a public method')
    return value


def mmengine_checkpoint_globals() -> list:
    """The ``(object, pickled name)`` pairs an mmengine Runner checkpoint needs.

    Found empirically (``torch.serialization.get_unsafe_globals_in_checkpoint`` on a checkpoint
    saved by ``Runner.train``): ``mmengine.logging.history_buffer.HistoryBuffer``,
    ``builtins.getattr`` (restricted, see ``_history_buffer_getattr``), numpy's
    ``multiarray._reconstruct``, ``multiarray.scalar``, ``ndarray``, ``dtype`` and the dtype
    classes (``numpy.dtypes.Float64DType`` ...) that ``BUILD`` sees. The numpy functions are
    registered under both the numpy 2 (``numpy._core``) and numpy 1 (``numpy.core``) module
    paths, so checkpoints written under either numpy load under the other.
    """
    from mmengine.logging import HistoryBuffer
    reconstruct = np.zeros(1).__reduce__()[0]          # multiarray._reconstruct
    scalar = np.float64(0).__reduce__()[0]             # multiarray.scalar
    pairs = [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
             (_history_buffer_getattr, 'builtins.getattr'),
             (np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        pairs += [(reconstruct, f'{module}._reconstruct'), (scalar, f'{module}.scalar')]
    dtypes = getattr(np, 'dtypes', None)               # numpy >= 1.25
    if dtypes is not None:
        pairs += [(getattr(dtypes, n), f'numpy.dtypes.{n}') for n in _NUMPY_PLAIN_DTYPES
                  if hasattr(dtypes, n)]
    else:  # older numpy: dtype classes have no public module, only ``type(np.dtype(...))``
        pairs += [(type(np.dtype(c)), f'numpy.dtype[{c}]') for c in '?bBhHiIlLqQefdgFDGSU']
    return pairs


def allow_mmengine_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read checkpoints the mmengine Runner saved.

    Breaks on: torch >= 2.6 (``weights_only`` defaults to True) with mmengine <= 0.10.7, whose
    ``CheckpointLoader`` / ``load_checkpoint`` / ``Runner.resume`` call ``torch.load`` without
    ``weights_only``; the error is ``Unsupported global: GLOBAL
    mmengine.logging.history_buffer.HistoryBuffer``. Fix: ``add_safe_globals`` with exactly the
    globals listed by ``mmengine_checkpoint_globals``; safe loading stays the default, so an
    arbitrary global in a checkpoint is still refused. No-op on torch without
    ``add_safe_globals`` (< 2.4, where full unpickling is the default anyway).
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None or not _once('allow_mmengine_checkpoint_globals'):
        return
    add(mmengine_checkpoint_globals())


def _has_accelerator() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                                 is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def enable_cpu_amp_optim_wrapper() -> None:
    """Let mmengine's ``AmpOptimWrapper`` run on a CPU-only machine with bf16 autocast.

    Breaks on: mmengine <= 0.10.7, whose ``AmpOptimWrapper.__init__`` asserts a GPU/NPU/MLU/MUSA
    device, although its ``optim_context`` uses mmengine's ``autocast``, which supports CPU with
    ``torch.bfloat16``. With an accelerator the original ``__init__`` runs unchanged. Without one,
    ``dtype`` must be ``'bfloat16'`` (or None, meaning bf16) and loss scaling is disabled: the
    CUDA ``GradScaler`` mmengine picks would disable itself on CPU anyway, and bf16 has the fp32
    exponent range, so gradients do not underflow and need no scaling (scaling exists for fp16).
    ``state_dict`` then holds an empty ``loss_scaler`` entry and loads back the same way.
    """
    if not _once('enable_cpu_amp_optim_wrapper'):
        return
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    original_init = AmpOptimWrapper.__init__

    def __init__(self, loss_scale='dynamic', dtype=None, use_fsdp=False, **kwargs):
        if _has_accelerator():
            return original_init(self, loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp,
                                 **kwargs)
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(f'AmpOptimWrapper on CPU supports dtype bfloat16 only, got {dtype}')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16

    __init__.__doc__ = original_init.__doc__
    __init__.__wrapped__ = original_init
    AmpOptimWrapper.__init__ = __init__


def apply_all() -> None:
    """Apply every shim (idempotent; importing ``cds_mm`` already does this)."""
    allow_mmengine_checkpoint_globals()
    enable_cpu_amp_optim_wrapper()


apply_all()
