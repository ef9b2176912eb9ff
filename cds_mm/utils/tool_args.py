"""What ``tools/train.py`` and ``tools/test.py`` share: flags and config
set-up."""
import argparse
import glob
import os
import os.path as osp
import re
import warnings

CFG_OPTIONS_HELP = (
    'override some settings in the used config, the key-value pair in '
    'xxx=yyy format will be merged into config file. If the value to be '
    'overwritten is a list, it should be like key="[a,b]" or key=a,b. It also '
    'allows nested list/tuple values, e.g. key="[(a,b),(c,d)]". Note that the '
    'quotation marks are necessary and that no white space is allowed.')

# Renamed configs: old file name -> new one, in the same folder. The old
# file stays as a two-line alias of the new one (not in metafile.yml), so
# existing commands keep working; load_config warns.
DEPRECATED_CONFIGS = {
    'resnet18_base_1xb128_cifar100.py': 'resnet18_baseline_1xb128_cifar100.py',
    'resnet50_base_1xb128_cifar100.py': 'resnet50_baseline_1xb128_cifar100.py',
    'resnet18-w16_base_1xb128_fashionmnist.py':
    'resnet18-w16_baseline_1xb128_fashionmnist.py',
    # the image-level head alone became the COCO default
    'faster-rcnn_r50_fpn_cds-img_1x_coco.py':
    'faster-rcnn_r50_fpn_cds_1x_coco.py',
}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local_rank``, as upstream."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=CFG_OPTIONS_HELP)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch >= 2.0's launchers pass `--local-rank`, older ones `--local_rank`
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def check_common_args(parser: argparse.ArgumentParser,
                      args: argparse.Namespace) -> None:
    """Fail on a missing config file; export ``LOCAL_RANK`` as upstream."""
    if not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def load_config(config: str):
    """``Config.fromfile`` with cds_mm's stack fixes applied first.

    Our tools opt in to :mod:`cds_mm.compat` (``import cds_mm`` alone patches
    nothing); an mmdet config also gets mmdet's dynamo cache limit, as in
    mmdet's own tools. A config under a deprecated name
    (:data:`DEPRECATED_CONFIGS`) loads as before, with a
    ``DeprecationWarning`` naming the new file.
    """
    from mmengine.config import Config

    import cds_mm.compat  # noqa: F401  (applies the version-checked shims)
    new_name = DEPRECATED_CONFIGS.get(osp.basename(config))
    if new_name is not None:
        warnings.warn(
            f'{config} is a deprecated name; use '
            f'{osp.join(osp.dirname(config), new_name)}',
            DeprecationWarning,
            stacklevel=2)
    cfg = Config.fromfile(config)
    if cfg.get('default_scope', None) == 'mmdet':
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    return cfg


def apply_common_args(cfg, args: argparse.Namespace):
    """Launcher, ``--cfg-options`` and work_dir, in mmdet's order.

    ``--cfg-options data_root=DIR`` moves every dataset (and evaluator
    annotation file) under ``DIR``; explicit per-loader keys still win.
    work_dir: ``--work-dir`` > the config's own > ``./work_dirs/<config>``.
    """
    from cds_mm.datasets.data_root import merge_cfg_options
    cfg.launcher = args.launcher
    # data_root=DIR reaches every dataloader and evaluator, as users expect
    merge_cfg_options(cfg, args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def latest_checkpoint(work_dir: str):
    """The checkpoint that ``--resume`` without a path resumes, or None.

    mmengine's choice, the path in ``work_dir/last_checkpoint``, when that
    file exists. CheckpointHook rewrites ``last_checkpoint`` after each save;
    a kill between its truncation and the write leaves it empty and mmengine
    would resume from ``''``. Then the newest ``epoch_N.pth``/``iter_N.pth``
    is taken: that save had finished. ``best_*.pth`` holds no optimizer state
    and is never resumed.
    """
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            path = f.read().strip()
        if path and osp.isfile(path):
            return path
    ckpts = [
        p for p in glob.glob(osp.join(work_dir, '*.pth'))
        if re.fullmatch(r'(epoch|iter)_\d+\.pth', osp.basename(p))
    ]
    return max(ckpts, key=osp.getmtime, default=None)


def build_runner(cfg):
    """``Runner.from_cfg`` unless the config names a ``runner_type``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def check_data_or_exit(cfg, loaders) -> None:
    """Stop with one line naming the missing path, key and where to get it."""
    from cds_mm.datasets.data_checks import MissingDataError, check_data
    try:
        check_data(cfg, loaders)
    except MissingDataError as e:
        raise SystemExit(f'error: {e}')
