"""Opt-in fixes to the OpenMMLab stack; importing this module applies them.

``import cds_mm`` patches nothing. Our ``tools/*.py`` import this module, and
users of the upstream tools opt in with one config line::

    custom_imports = dict(imports=['cds_mm', 'cds_mm.compat'],
                          allow_failed_imports=False)

Each shim says what breaks and on which versions, checks those versions and
does nothing elsewhere, and is idempotent:

- ``allow_mmengine_checkpoint_globals`` (torch >= 2.6, mmengine <= 0.10.7):
  ``load_from`` / ``resume`` / ``tools/test.py`` read Runner checkpoints under
  torch's ``weights_only`` default, through a narrow allowlist.
- ``enable_cpu_amp_optim_wrapper`` (mmengine <= 0.10.7): ``--amp`` on a
  CPU-only machine (bf16 autocast, no loss scaling).
- ``fix_mmcv_adjust_hue_for_numpy2`` (mmcv <= 2.1.0, numpy >= 2):
  ``ColorJitter(hue=...)`` no longer overflows on negative shifts.
- ``run_mmcv_cpu_ops_in_fp32`` (mmcv <= 2.1.0): CPU ``nms`` / ``RoIAlign``
  under bf16 autocast.
- ``atomic_checkpoint_save`` (mmengine <= 0.10.7): a killed checkpoint write
  never leaves half a file.
- ``run_distributed_on_cpu`` (mmengine <= 0.10.7): ``--launcher pytorch`` on
  a CPU-only machine (gloo).
- ``explain_empty_datasets`` (mmengine <= 0.10.7): an empty data set says so
  and names its annotation file.
"""
from .atomic_checkpoint import atomic_checkpoint_save
from .checkpoint_globals import (_history_buffer_getattr,
                                 allow_mmengine_checkpoint_globals,
                                 mmengine_checkpoint_globals)
from .cpu_amp import enable_cpu_amp_optim_wrapper
from .cpu_distributed import run_distributed_on_cpu
from .empty_dataset import explain_empty_datasets
from .mmcv_ops import fix_mmcv_adjust_hue_for_numpy2, run_mmcv_cpu_ops_in_fp32

SHIMS = (allow_mmengine_checkpoint_globals, enable_cpu_amp_optim_wrapper,
         fix_mmcv_adjust_hue_for_numpy2, run_mmcv_cpu_ops_in_fp32,
         atomic_checkpoint_save, run_distributed_on_cpu,
         explain_empty_datasets)


def apply_all() -> None:
    """Apply every shim whose versions match (idempotent)."""
    for shim in SHIMS:
        shim()


__all__ = [
    'apply_all', 'mmengine_checkpoint_globals', '_history_buffer_getattr'
] + [shim.__name__ for shim in SHIMS]

apply_all()
