"""Train an mmdet detector or an mmpretrain classifier, with or without CDS.

Same CLI as mmdet's ``tools/train.py`` (plus mmpretrain's ``--no-validate``); the config's
``default_scope`` ('mmdet' or 'mmpretrain') picks the library-specific behaviour::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--no-validate] [--cfg-options k=v ...] [--launcher pytorch]

``cds_mm`` is imported before anything is built, so its stack shims (``cds_mm/compat.py``) and
registries are active even if a config forgets ``custom_imports``.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def import_cds_mm():
    """Import ``cds_mm``; put the repo root on ``sys.path`` first if it is not installed."""
    if importlib.util.find_spec('cds_mm') is None:
        sys.path.insert(0, REPO_ROOT)
    import cds_mm  # noqa: F401  (shims + registries)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a detector or a classifier (cds_mm)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', default=False,
        help='enable automatic-mixed-precision training (bf16 autocast on a CPU-only machine)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='If specify checkpoint path, resume from it, while if not specify, try to auto '
        'resume from the latest checkpoint in the work directory.')
    parser.add_argument(
        '--no-validate', action='store_true',
        help='do not evaluate checkpoints during training (drops val_cfg/dataloader/evaluator)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy format '
        'will be merged into config file. If the value to be overwritten is a list, it should be '
        'like key="[a,b]" or key=a,b. It also allows nested list/tuple values, e.g. '
        'key="[(a,b),(c,d)]". Note that the quotation marks are necessary and that no white '
        'space is allowed.')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch >= 2.0's launchers pass `--local-rank`, older ones `--local_rank`
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the CLI flags to ``cfg`` in mmdet's order (``--cfg-options`` first)."""
    import torch
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
        if not torch.cuda.is_available():
            # CPU autocast supports bf16 only; mmengine's AmpOptimWrapper asserts an
            # accelerator, cds_mm.compat.enable_cpu_amp_optim_wrapper lifts that for bf16 and
            # turns loss scaling off (bf16 has fp32's exponent range: nothing underflows).
            cfg.optim_wrapper.dtype = 'bfloat16'

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or "auto_scale_lr.base_batch_size" '
                               'in your configuration file.')

    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def build_runner(cfg):
    """``Runner.from_cfg`` unless the config names a ``runner_type``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def main(argv=None):
    args = parse_args(argv)
    import_cds_mm()
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if cfg.get('default_scope', None) == 'mmdet':
        # as mmdet's tool: honour DYNAMO_CACHE_SIZE_LIMIT
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
