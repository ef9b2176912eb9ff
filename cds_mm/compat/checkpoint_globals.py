"""torch >= 2.6 safe loading of the checkpoints mmengine <= 0.10.7 saves."""
import inspect
import pickle

import numpy as np
import torch

from .utils import once, version_in

# numpy dtype classes holding plain data; object, void (structured) and
# variable-width string dtypes are left out on purpose: mmengine checkpoints
# hold float64 / int64 arrays and scalars.
_NUMPY_PLAIN_DTYPES = ('BoolDType', 'Int8DType', 'Int16DType', 'Int32DType',
                       'Int64DType', 'UInt8DType', 'UInt16DType',
                       'UInt32DType', 'UInt64DType', 'ByteDType', 'UByteDType',
                       'ShortDType', 'UShortDType', 'IntDType', 'UIntDType',
                       'LongDType', 'ULongDType', 'LongLongDType',
                       'ULongLongDType', 'Float16DType', 'Float32DType',
                       'Float64DType', 'LongDoubleDType', 'Complex64DType',
                       'Complex128DType', 'CLongDoubleDType', 'BytesDType',
                       'StrDType', 'DateTime64DType', 'TimeDelta64DType')


def _history_buffer_getattr(obj, name: str):
    """``getattr`` restricted to ``HistoryBuffer``'s public methods.

    ``HistoryBuffer.__getstate__`` stores its ``_statistics_methods``
    (``HistoryBuffer.min``, ``.max``, ``.current``, ``.mean``), which pickle
    writes as ``getattr(HistoryBuffer, 'min')``. Allowlisting the real
    ``builtins.getattr`` would let a checkpoint fetch any attribute of any
    allowlisted object, so the name ``builtins.getattr`` maps to this function
    instead.
    """
    from mmengine.logging import HistoryBuffer
    if not (isinstance(obj, type) and issubclass(obj, HistoryBuffer)):
        raise pickle.UnpicklingError(
            'weights_only load: getattr is only allowed on HistoryBuffer, '
            f'got {obj!r}')
    value = getattr(obj, name, None) if not name.startswith('_') else None
    if not inspect.isfunction(value):
        raise pickle.UnpicklingError(
            f'weights_only load: HistoryBuffer.{name} is not a public method')
    return value


def mmengine_checkpoint_globals() -> list:
    """The ``(object, pickled name)`` pairs an mmengine Runner checkpoint
    needs.

    Found empirically (``torch.serialization.get_unsafe_globals_in_checkpoint``
    on a checkpoint saved by ``Runner.train``):
    ``mmengine.logging.history_buffer.HistoryBuffer``, ``builtins.getattr``
    (restricted, see ``_history_buffer_getattr``), numpy's
    ``multiarray._reconstruct``, ``multiarray.scalar``, ``ndarray``, ``dtype``
    and the dtype classes (``numpy.dtypes.Float64DType`` ...) that ``BUILD``
    sees. The numpy functions are registered under both the numpy 2
    (``numpy._core``) and numpy 1 (``numpy.core``) module paths, so checkpoints
    written under either numpy load under the other.
    """
    from mmengine.logging import HistoryBuffer

    # multiarray._reconstruct
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]  # multiarray.scalar
    pairs = [(HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
             (_history_buffer_getattr, 'builtins.getattr'),
             (np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        pairs += [(reconstruct, f'{module}._reconstruct'),
                  (scalar, f'{module}.scalar')]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes is not None:
        pairs += [(getattr(dtypes, n), f'numpy.dtypes.{n}')
                  for n in _NUMPY_PLAIN_DTYPES if hasattr(dtypes, n)]
    # numpy < 1.25: no public dtype classes; BUILD only checks the class, not
    # its name
    else:
        pairs += [(type(np.dtype(c)), f'numpy.dtype[{c}]')
                  for c in '?bBhHiIlLqQefdgFDGSU']
    return pairs


def allow_mmengine_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read checkpoints the mmengine
    Runner saved.

    Breaks on: torch >= 2.6 (``weights_only`` defaults to True) with mmengine
    <= 0.10.7, whose ``CheckpointLoader`` / ``load_checkpoint`` /
    ``Runner.resume`` call ``torch.load`` without ``weights_only``; the error
    is ``Unsupported global: GLOBAL
    mmengine.logging.history_buffer.HistoryBuffer``. Fix: ``add_safe_globals``
    with exactly the globals listed by ``mmengine_checkpoint_globals``; safe
    loading stays the default, so an arbitrary global in a checkpoint is still
    refused. No-op on torch without ``add_safe_globals`` (< 2.4, where full
    unpickling is the default anyway).
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if (add is None or not version_in('torch', min_version='2.6.0')
            or not version_in('mmengine', max_version='0.10.7')
            or not once('allow_mmengine_checkpoint_globals')):
        return
    add(mmengine_checkpoint_globals())
