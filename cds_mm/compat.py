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
    fix_mmcv_adjust_hue_for_numpy2: mmcv 2.1.0's ``adjust_hue`` casts a negative shift with
        ``np.uint8(hue_factor * 255)``, an ``OverflowError`` under numpy >= 2, so mmpretrain's
        ``ColorJitter(hue=0.1)`` (the CDS colour view) crashes on about half the images.
    run_mmcv_cpu_ops_in_fp32: mmcv 2.1.0's CPU ``nms`` and ``roi_align`` kernels have no bf16
        dispatch, so a detector under CPU bf16 autocast (``--amp`` without a GPU) fails with
        ``expected scalar type Float but found BFloat16``; they now compute in fp32 on CPU.
    atomic_checkpoint_save: mmengine 0.10.7 writes a checkpoint's bytes in place, so a kill or a
        full disk mid-write leaves a truncated ``iter_N.pth`` / ``epoch_N.pth`` (or a half
        overwritten one); local writes now go to ``path + '.tmp'`` and are renamed over ``path``.
    run_distributed_on_cpu: mmengine 0.10.7's ``--launcher pytorch`` calls
        ``torch.cuda.set_device`` and DDP gets ``device_ids``, so ``tools/dist_train.sh`` fails on
        a CPU-only machine; without an accelerator it now runs on gloo.
"""
import inspect
import logging
import os
import os.path as osp
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
    else:  # numpy < 1.25: no public dtype classes; BUILD only checks the class, not its name
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


def fix_mmcv_adjust_hue_for_numpy2() -> None:
    """Give ``mmcv.adjust_hue`` numpy 1's uint8 wrap-around for negative hue shifts.

    Breaks on: mmcv <= 2.1.0 with numpy >= 2. ``adjust_hue`` rotates the 8-bit hue channel by
    ``np.uint8(hue_factor * 255)``; numpy 1 wrapped a negative value modulo 256, numpy 2 raises
    ``OverflowError: Python integer -4 out of bounds for uint8``. mmpretrain's ``ColorJitter``
    draws ``hue_factor`` in ``[-hue, hue]``, so the CDS colour view fails on about half the
    images. Fix: ``hue_factor`` in ``[-0.5, 0)`` uses the same cv2/pillow steps with the shift
    ``int(hue_factor * 255) % 256`` (numpy 1's result, bit for bit); every other call, bad
    input included, goes to the original unchanged. Patched on ``mmcv``, ``mmcv.image`` and
    ``mmcv.image.photometric``, the names mmpretrain and mmcv look it up by.
    """
    if not _once('fix_mmcv_adjust_hue_for_numpy2'):
        return
    try:
        import mmcv
        import mmcv.image
        from mmcv.image import photometric
    except ImportError:  # mmcv absent: nothing to fix
        return
    original = photometric.adjust_hue

    def adjust_hue(img, hue_factor, backend=None):
        if not (-0.5 <= hue_factor < 0 and isinstance(img, np.ndarray) and img.ndim in (2, 3)):
            return original(img, hue_factor, backend=backend)
        shift = np.uint8(int(hue_factor * 255) % 256)
        backend = photometric.imread_backend if backend is None else backend
        if backend == 'pillow':
            from PIL import Image
            assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
            pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
            h, s, v = pil_image.convert('HSV').split()
            np_h = np.array(h, dtype=np.uint8) + shift     # uint8 + uint8 wraps
            pil_image = Image.merge('HSV', (Image.fromarray(np_h, 'L'), s, v)).convert('RGB')
            return np.array(pil_image, dtype=img.dtype)[..., ::-1]
        if backend != 'cv2':
            return original(img, hue_factor, backend=backend)  # raises the upstream ValueError
        import cv2
        h, s, v = cv2.split(cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL))
        h = h.astype(np.uint8) + shift
        return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL).astype(img.dtype)

    adjust_hue.__doc__ = original.__doc__
    adjust_hue.__wrapped__ = original
    for module in (mmcv, mmcv.image, photometric):
        if getattr(module, 'adjust_hue', None) is original:
            module.adjust_hue = adjust_hue


def run_mmcv_cpu_ops_in_fp32() -> None:
    """Run mmcv's CPU ``nms`` and ``RoIAlign`` in fp32 when given bf16/fp16 tensors.

    Breaks on: mmcv 2.1.0 (its CPU kernels dispatch float/double only) with CPU autocast, which
    mmengine's ``AmpOptimWrapper`` uses on a CPU-only machine (see
    ``enable_cpu_amp_optim_wrapper``): RPN proposals reach ``nms`` and FPN features reach
    ``RoIAlign`` as bf16. Fix: on CPU only, ``NMSop.forward`` casts boxes and scores to fp32
    (it returns indices, so ``nms`` still returns dets in the input dtype) and
    ``RoIAlign.forward`` computes in fp32 and casts the result back to the features' dtype
    (all casts differentiable; mmdet writes it into a buffer of that dtype). GPU and fp32
    calls are unchanged.
    """
    if not _once('run_mmcv_cpu_ops_in_fp32'):
        return
    try:
        from mmcv.ops import RoIAlign
        from mmcv.ops.nms import NMSop
    except ImportError:  # mmcv without compiled ops: nothing to fix
        return
    low = (torch.bfloat16, torch.float16)

    def needs_fp32(*tensors):
        return any(t.device.type == 'cpu' and t.dtype in low for t in tensors)

    nms_forward = NMSop.forward

    def nms_fp32(ctx, bboxes, scores, *args):
        if needs_fp32(bboxes, scores):
            bboxes, scores = bboxes.float(), scores.float()
        return nms_forward(ctx, bboxes, scores, *args)

    roi_align_forward = RoIAlign.forward

    def roi_align_fp32(self, input, rois):
        if needs_fp32(input, rois):
            with torch.autocast('cpu', enabled=False):
                out = roi_align_forward(self, input.float(), rois.float())
            return out.to(input.dtype)  # callers index-put it into input-dtype buffers
        return roi_align_forward(self, input, rois)

    nms_fp32.__wrapped__, roi_align_fp32.__wrapped__ = nms_forward, roi_align_forward
    NMSop.forward = staticmethod(nms_fp32)
    RoIAlign.forward = roi_align_fp32


def atomic_checkpoint_save() -> None:
    """Make mmengine's local checkpoint writes atomic: the old file or the new one, never half.

    Breaks on: mmengine <= 0.10.7. ``save_checkpoint`` (used by ``Runner.save_checkpoint``, so by
    ``CheckpointHook``, ``EMAHook`` checkpoints and ``_publish_model``) serialises with
    ``torch.save`` into memory and hands the bytes to ``LocalBackend.put``, which opens the
    target with ``'wb'`` (truncating it) and writes in place. A SIGKILL, an OOM kill or a full
    disk during that write leaves a truncated ``iter_N.pth`` that fails to load, or destroys the
    previous content of a file saved again under the same name. Fix: ``LocalBackend.put`` (the
    narrowest point every local checkpoint write goes through; ``HardDiskBackend`` inherits it)
    writes ``path + '.tmp'`` in the same folder, flushes and fsyncs it, ``os.replace``-s it over
    ``path`` (atomic on POSIX and Windows) and fsyncs the folder. On an exception the ``.tmp``
    file is removed; a SIGKILL can leave it behind, and the next write to ``path`` replaces it.
    A symlinked ``path`` is written through, as before. Other ``put`` callers
    (``mmengine.dump`` to a local path) become atomic too.
    """
    if not _once('atomic_checkpoint_save'):
        return
    from mmengine.fileio.backends.local_backend import LocalBackend
    original = LocalBackend.put

    def put(self, obj, filepath):
        path = osp.realpath(filepath)  # write through a symlink, as open(filepath) did
        os.makedirs(osp.dirname(path), exist_ok=True)
        tmp = path + '.tmp'
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if osp.lexists(tmp):
                os.remove(tmp)
            raise
        try:  # POSIX: make the rename itself durable (best effort; no O_DIRECTORY on Windows)
            fd = os.open(osp.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        except (AttributeError, OSError):
            return
        try:
            os.fsync(fd)
        except OSError:  # some file systems refuse fsync on a folder
            pass
        finally:
            os.close(fd)

    put.__doc__ = original.__doc__
    put.__wrapped__ = original
    LocalBackend.put = put


def run_distributed_on_cpu() -> None:
    """Let ``tools/train.py --launcher pytorch`` (``tools/dist_train.sh``) train on CPU with gloo.

    Breaks on: mmengine <= 0.10.7 on a machine without GPU/NPU/MLU/MUSA. ``_init_dist_pytorch``
    calls ``torch.cuda.set_device(local_rank)`` unconditionally (``RuntimeError: Found no NVIDIA
    driver on your system``); the mmdet / mmpretrain ``default_runtime`` configs ask for the
    ``nccl`` backend, which has no CPU support; and ``Runner.wrap_model`` gives
    ``MMDistributedDataParallel`` ``device_ids=[LOCAL_RANK]``, which torch's DDP refuses for a
    module on CPU. Fix, only without an accelerator: no ``set_device``, ``gloo`` in place of
    ``nccl`` (warned once per process), and no ``device_ids`` for a module whose parameters are
    all on CPU. With an accelerator both functions run unchanged. SyncBN still needs GPUs: on CPU
    torch's DDP raises ``ValueError: SyncBatchNorm layers only work with GPU modules``.
    """
    if not _once('run_distributed_on_cpu'):
        return
    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils
    from mmengine.logging import print_log
    from mmengine.model import MMDistributedDataParallel
    init_pytorch = dist_utils._init_dist_pytorch

    def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if _has_accelerator() or init_backend != 'torch':
            return init_pytorch(backend, init_backend=init_backend, **kwargs)
        if backend == 'nccl':
            print_log("env_cfg.dist_cfg.backend='nccl' needs GPUs; using 'gloo' on this CPU-only "
                      "machine. Set env_cfg.dist_cfg.backend='gloo' to silence this.",
                      logger='current', level=logging.WARNING)
            backend = 'gloo'
        torch_dist.init_process_group(backend=backend, **kwargs)

    ddp_init = MMDistributedDataParallel.__init__

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        if (kwargs.get('device_ids') is not None and not _has_accelerator()
                and all(p.device.type == 'cpu' for p in module.parameters())):
            kwargs['device_ids'] = None
        ddp_init(self, module, detect_anomalous_params=detect_anomalous_params, **kwargs)

    _init_dist_pytorch.__wrapped__, __init__.__wrapped__ = init_pytorch, ddp_init
    __init__.__doc__ = ddp_init.__doc__
    dist_utils._init_dist_pytorch = _init_dist_pytorch
    MMDistributedDataParallel.__init__ = __init__


def explain_empty_datasets() -> None:
    """Say "the data set is empty" instead of failing deep inside mmengine.

    mmengine 0.10.7's ``BaseDataset`` with an empty annotation list fails in
    ``_serialize_data`` with "need at least one array to concatenate" (or, with
    ``serialize_data=False``, a ZeroDivisionError in ``DefaultSampler``); neither
    names the data set.
    """
    if not _once('explain_empty_datasets'):
        return
    from mmengine.dataset import BaseDataset
    serialize, full_init = BaseDataset._serialize_data, BaseDataset.full_init

    def check(dataset):
        if not dataset.data_list:
            raise ValueError(
                f'{type(dataset).__name__} is empty: 0 samples from '
                f'ann_file={dataset.ann_file!r} (data_root={dataset.data_root!r}); '
                'check the annotation file, data_prefix and filter_cfg')

    def checked_serialize(self):
        check(self)
        return serialize(self)

    def checked_full_init(self):
        full_init(self)
        if not self.serialize_data:
            check(self)

    checked_serialize.__wrapped__ = serialize
    checked_full_init.__wrapped__ = full_init
    BaseDataset._serialize_data = checked_serialize
    BaseDataset.full_init = checked_full_init


def apply_all() -> None:
    """Apply every shim (idempotent; importing ``cds_mm`` already does this)."""
    allow_mmengine_checkpoint_globals()
    enable_cpu_amp_optim_wrapper()
    fix_mmcv_adjust_hue_for_numpy2()
    run_mmcv_cpu_ops_in_fp32()
    atomic_checkpoint_save()
    run_distributed_on_cpu()
    explain_empty_datasets()


apply_all()
