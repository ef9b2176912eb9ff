"""Train an mmdet detector or an mmpretrain classifier, with or without CDS.

Same CLI as mmdet's ``tools/train.py`` (plus mmpretrain's ``--no-validate``);
the config's ``default_scope`` ('mmdet' or 'mmpretrain') picks the
library-specific behaviour::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
    [--auto-scale-lr]
                                 [--no-validate] [--cfg-options k=v ...]
                                 [--launcher pytorch]

``cds_mm`` and its opt-in stack fixes (``cds_mm.compat``) are imported before
anything is built, so they are active even if a config forgets
``custom_imports``.
"""
import argparse
import importlib.util
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# run from a clone, not installed
if importlib.util.find_spec('cds_mm') is None:
    sys.path.insert(0, REPO_ROOT)
from cds_mm.utils.tool_args import (add_common_args, apply_common_args,
                                    build_runner, check_common_args,
                                    check_data_or_exit, latest_checkpoint,
                                    load_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a detector or a classifier (cds_mm)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (bf16 autocast on a '
        'CPU-only machine)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint in the work '
        'directory.')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training (drops '
        'val_cfg/dataloader/evaluator)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    return args


def merge_args(cfg, args):
    """Apply the CLI flags to ``cfg`` in mmdet's order (``--cfg-options``
    first)."""
    import torch
    cfg = apply_common_args(cfg, args)
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
        if not torch.cuda.is_available():
            # CPU autocast supports bf16 only; mmengine's AmpOptimWrapper
            # asserts an accelerator,
            # cds_mm.compat.enable_cpu_amp_optim_wrapper lifts that for bf16
            # and turns loss scaling off (bf16 has fp32's exponent range:
            # nothing underflows).
            cfg.optim_wrapper.dtype = 'bfloat16'

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.base_batch_size" '
                               'in your configuration file.')

    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = latest_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    check_data_or_exit(cfg, ('train_dataloader', 'val_dataloader'))
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
