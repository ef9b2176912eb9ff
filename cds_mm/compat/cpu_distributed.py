"""``--launcher pytorch`` on a CPU-only machine with mmengine <= 0.10.7."""
import logging

from .utils import has_accelerator, once, version_in


def run_distributed_on_cpu() -> None:
    """Let ``tools/train.py --launcher pytorch`` (``tools/dist_train.sh``)
    train on CPU with gloo.

    Breaks on: mmengine <= 0.10.7 on a machine without GPU/NPU/MLU/MUSA.
    ``_init_dist_pytorch`` calls ``torch.cuda.set_device(local_rank)``
    unconditionally (``RuntimeError: Found no NVIDIA driver on your system``);
    the mmdet / mmpretrain ``default_runtime`` configs ask for the ``nccl``
    backend, which has no CPU support; and ``Runner.wrap_model`` gives
    ``MMDistributedDataParallel`` ``device_ids=[LOCAL_RANK]``, which torch's
    DDP refuses for a module on CPU. Fix, only without an accelerator: no
    ``set_device``, ``gloo`` in place of ``nccl`` (warned once per process),
    and no ``device_ids`` for a module whose parameters are all on CPU. With an
    accelerator both functions run unchanged. SyncBN still needs GPUs: on CPU
    torch's DDP raises ``ValueError: SyncBatchNorm layers only work with GPU
    modules``.
    """
    if not version_in(
            'mmengine',
            max_version='0.10.7') or not once('run_distributed_on_cpu'):
        return
    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils
    from mmengine.logging import print_log
    from mmengine.model import MMDistributedDataParallel
    init_pytorch = dist_utils._init_dist_pytorch

    def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if has_accelerator() or init_backend != 'torch':
            return init_pytorch(backend, init_backend=init_backend, **kwargs)
        if backend == 'nccl':
            print_log(
                "env_cfg.dist_cfg.backend='nccl' needs GPUs; using 'gloo' on "
                "this CPU-only "
                "machine. Set env_cfg.dist_cfg.backend='gloo' to silence "
                "this.",
                logger='current',
                level=logging.WARNING)
            backend = 'gloo'
        torch_dist.init_process_group(backend=backend, **kwargs)

    ddp_init = MMDistributedDataParallel.__init__

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        if (kwargs.get('device_ids') is not None and not has_accelerator()
                and all(p.device.type == 'cpu' for p in module.parameters())):
            kwargs['device_ids'] = None
        ddp_init(
            self,
            module,
            detect_anomalous_params=detect_anomalous_params,
            **kwargs)

    _init_dist_pytorch.__wrapped__ = init_pytorch
    __init__.__wrapped__ = ddp_init
    __init__.__doc__ = ddp_init.__doc__
    dist_utils._init_dist_pytorch = _init_dist_pytorch
    MMDistributedDataParallel.__init__ = __init__
