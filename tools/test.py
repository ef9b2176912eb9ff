"""Test (and evaluate) an mmdet detector or an mmpretrain classifier
checkpoint.

Same CLI as mmdet's ``tools/test.py``; the config's ``default_scope`` ('mmdet'
or 'mmpretrain') picks the dump metric, the visualization hook and the default
TTA::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
    [--show]
                         [--show-dir DIR] [--wait-time S] [--tta]
                         [--cfg-options k=v ...] [--launcher pytorch]

Inference runs whatever ``model`` the config builds; a CDS wrapper's
``predict`` is the plain model's. ``cds_mm`` and its opt-in stack fixes
(``cds_mm.compat``: safe ``torch.load`` of mmengine checkpoints) are imported
first.
"""
import argparse
import importlib.util
import os.path as osp
import sys
import warnings
from copy import deepcopy

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# run from a clone, not installed
if importlib.util.find_spec('cds_mm') is None:
    sys.path.insert(0, REPO_ROOT)
from cds_mm.utils.tool_args import (add_common_args, apply_common_args,
                                    build_runner, check_common_args,
                                    check_data_or_exit, load_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and eval) a model (cds_mm)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (mmdet: inside '
        'work_dir/timestamp; mmpretrain: the path as given)')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='mmpretrain only: visualize every N-th sample (mmdet keeps its '
        'hook\'s interval)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    add_common_args(parser)
    parser.add_argument(
        '--tta', action='store_true', help='enable test-time augmentation')
    args = parser.parse_args(argv)
    check_common_args(parser, args)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must end with .pkl or .pickle, got {args.out}')
    return args


def enable_visualization(cfg, args, scope):
    """Turn the config's visualization hook on (mmdet: draw; mmpretrain:
    enable)."""
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks; e.g. '
            'visualization=dict(type="DetVisualizationHook") for mmdet or '
            'dict(type="VisualizationHook") for mmpretrain')
    hook = hooks['visualization']
    if scope == 'mmdet':
        hook['draw'] = True
        if args.show_dir:
            hook['test_out_dir'] = args.show_dir
    elif scope == 'mmpretrain':
        hook['enable'] = True
        hook['interval'] = args.interval
        if args.show_dir:
            hook['out_dir'] = args.show_dir
    else:
        raise ValueError(
            f'--show/--show-dir need default_scope mmdet or mmpretrain, '
            f'got {scope!r}')
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    return cfg


def enable_tta(cfg, scope):
    """Wrap ``cfg.model`` in the config's ``tta_model`` (or a flip TTA default
    for the scope)."""
    from mmengine.config import ConfigDict
    test_data = cfg.test_dataloader.dataset
    while 'dataset' in test_data:
        test_data = test_data['dataset']
    if 'tta_model' not in cfg:
        warnings.warn(
            'Cannot find ``tta_model`` in config, we will set it as default.')
        cfg.tta_model = (
            dict(
                type='DetTTAModel',
                tta_cfg=dict(
                    nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
            if scope == 'mmdet' else dict(
                type='mmpretrain.AverageClsScoreTTA'))
    if 'tta_pipeline' not in cfg:
        warnings.warn(
            'Cannot find ``tta_pipeline`` in config, we will set it as '
            'default.')
        pack = test_data.pipeline[-1]
        if scope == 'mmdet':
            pack = dict(
                type='PackDetInputs',
                meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                           'scale_factor', 'flip', 'flip_direction'))
        cfg.tta_pipeline = deepcopy(test_data.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[
                dict(type='RandomFlip', prob=1.),
                dict(type='RandomFlip', prob=0.)
            ], [pack]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    test_data.pipeline = cfg.tta_pipeline
    return cfg


def dump_metric(out, scope):
    """The metric that pickles predictions: mmdet's ``DumpDetResults`` or
    mmengine's."""
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out)
    from mmengine.evaluator import \
        DumpResults  # what mmpretrain's tools/test.py uses
    return DumpResults(out_file_path=out)


def main(argv=None):
    args = parse_args(argv)
    cfg = apply_common_args(load_config(args.config), args)
    scope = cfg.get('default_scope', None)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = enable_visualization(cfg, args, scope)
    if args.tta:
        cfg = enable_tta(cfg, scope)

    check_data_or_exit(cfg, ('test_dataloader', ))
    runner = build_runner(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(dump_metric(args.out, scope))
    return runner.test()


if __name__ == '__main__':
    main()
