"""``--amp`` on a CPU-only machine with mmengine <= 0.10.7."""
import torch

from .utils import has_accelerator, once, version_in


def enable_cpu_amp_optim_wrapper() -> None:
    """Let mmengine's ``AmpOptimWrapper`` run on a CPU-only machine with bf16
    autocast.

    Breaks on: mmengine <= 0.10.7, whose ``AmpOptimWrapper.__init__`` asserts a
    GPU/NPU/MLU/MUSA device, although its ``optim_context`` uses mmengine's
    ``autocast``, which supports CPU with ``torch.bfloat16``. With an
    accelerator the original ``__init__`` runs unchanged. Without one,
    ``dtype`` must be ``'bfloat16'`` (or None, meaning bf16) and loss scaling
    is disabled: the CUDA ``GradScaler`` mmengine picks would disable itself on
    CPU anyway, and bf16 has the fp32 exponent range, so gradients do not
    underflow and need no scaling (scaling exists for fp16). ``state_dict``
    then holds an empty ``loss_scaler`` entry and loads back the same way.
    """
    if not version_in(
            'mmengine',
            max_version='0.10.7') or not once('enable_cpu_amp_optim_wrapper'):
        return
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    original_init = AmpOptimWrapper.__init__

    def __init__(self,
                 loss_scale='dynamic',
                 dtype=None,
                 use_fsdp=False,
                 **kwargs):
        if has_accelerator():
            return original_init(
                self,
                loss_scale=loss_scale,
                dtype=dtype,
                use_fsdp=use_fsdp,
                **kwargs)
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(
                'AmpOptimWrapper on CPU supports dtype bfloat16 only, got '
                f'{dtype}')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16

    __init__.__doc__ = original_init.__doc__
    __init__.__wrapped__ = original_init
    AmpOptimWrapper.__init__ = __init__
