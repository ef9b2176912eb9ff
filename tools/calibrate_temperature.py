"""Fit a softmax temperature on the val split and store it with a classifier
checkpoint (post-hoc temperature scaling, Guo et al. 2017)::

    python tools/calibrate_temperature.py CONFIG CHECKPOINT [--out NEW_CKPT]
        [--test] [--num-bins 15] [--dump-json FILE] [--work-dir DIR]
        [--cfg-options k=v ...] [--launcher pytorch]

The config's val loop runs as ``tools/test.py`` runs its test loop
(``Runner.from_cfg``, ``load_from=CHECKPOINT``, the config's hooks, e.g. an
EMA swap, and val metrics), for any mmpretrain classifier or cds_mm wrapper.
Each sample's ``pred_score`` is kept; ``log(pred_score)`` is a logit up to a
per-sample constant, so ``fit_temperature`` fits the same ``T`` as the raw
logits would (``cds_mm/evaluation/temperature_scaling.py``).

Written, atomically: a copy of the checkpoint, weights unchanged, with
``meta['temperature_scaling']`` = ``temperature``, ``val_nll_before/after``,
``val_ece_before/after`` (ECE in percent, from ``ECEMetric``),
``val_num_samples``, ``num_bins``, ``config``, ``cfg_options``,
``checkpoint``; with ``--test`` also ``test_*`` (the test split scaled by the
val ``T``). ``--out`` defaults to ``calibrated_<checkpoint name>`` beside the
checkpoint (no match for the ``best_*`` / ``epoch_*`` globs of mmengine and
our benchmarks) and may name the checkpoint itself. ``--dump-json`` writes
the same record plus the reliability bins (before/after, per split).

At test time ``T`` goes to the metric, not the model:
``tools/test.py CONFIG NEW_CKPT --cfg-options test_evaluator.1.temperature=T``
(the tool prints the key for the config). ``ECEMetric(temperature=T)``
rescales the scores it bins; the checkpoint loads into the same model as
before, the dumped predictions stay the model's, and the accuracy cannot
change (the top-1 class is unchanged), so no wrapper or hook is needed.
"""
import argparse
import importlib.util
import json
import os.path as osp
import sys

import torch
from mmengine.evaluator import BaseMetric

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# run from a clone, not installed
if importlib.util.find_spec('cds_mm') is None:
    sys.path.insert(0, REPO_ROOT)
import cds_mm.utils.tool_args as tool_args  # noqa: E402
from cds_mm.evaluation import temperature_scaling as ts  # noqa: E402
from cds_mm.evaluation.metrics import ECEMetric  # noqa: E402
from cds_mm.utils import atomic_write  # noqa: E402

PREFIX = 'temperature_scaling'


def ece_and_bins(scores, labels, temperature, num_bins):
    """ECE (percent) and per-bin count/acc/conf through ``ECEMetric``, so the
    numbers are those ``tools/test.py`` prints with the same temperature."""
    metric = ECEMetric(
        num_bins=num_bins, save_diagram=False, temperature=temperature)
    metric.process(
        None, [dict(pred_score=s, gt_label=y) for s, y in zip(scores, labels)])
    conf = torch.tensor([r['conf'] for r in metric.results],
                        dtype=torch.float64)
    hit = torch.tensor([r['correct'] for r in metric.results],
                       dtype=torch.float64)
    bins = ECEMetric.bin_stats(conf, hit, num_bins)
    ece = metric.compute_metrics(metric.results)['ece']
    return ece, {k: [round(float(x), 6) for x in v] for k, v in bins.items()}


class ScoreCollector(BaseMetric):
    """Keeps ``pred_score`` and ``gt_label`` of a split; at the end fits
    ``T`` (``temperature=None``) or applies the given one, and reports NLL
    and ECE at ``T = 1`` and at ``T``. Not registered: only this tool adds it
    to a loop's evaluator; results are gathered across ranks and the metrics
    broadcast by mmengine's ``Evaluator``, the bins stay in ``self.summary``
    on rank 0."""

    def __init__(self, temperature=None, num_bins=15, prefix=PREFIX):
        super().__init__(collect_device='cpu', prefix=prefix)
        self.temperature, self.num_bins, self.summary = temperature, \
            num_bins, None

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            if 'pred_score' not in sample:
                raise ValueError(
                    'calibrate_temperature needs a classifier: no '
                    f'`pred_score` in the data sample, keys {sorted(sample)}')
            gt = torch.as_tensor(sample['gt_label']).reshape(-1)
            if gt.numel() != 1:
                raise ValueError('gt_label must hold one class id, got '
                                 f'{gt.numel()} (single-label only)')
            score = torch.as_tensor(sample['pred_score']).detach().cpu()
            self.results.append((score.float(), int(gt)))

    def compute_metrics(self, results):
        scores = torch.stack([s for s, _ in results])
        labels = torch.tensor([y for _, y in results])
        logits = ts.scores_to_logits(scores)
        t = self.temperature
        if t is None:
            t = ts.fit_temperature(logits, labels)
        ece = {
            k: ece_and_bins(scores, labels, tk, self.num_bins)
            for k, tk in (('before', 1.0), ('after', t))
        }
        self.summary = dict(
            temperature=t,
            num_samples=len(labels),
            nll_before=ts.temperature_nll(logits, labels, 1.0),
            nll_after=ts.temperature_nll(logits, labels, t),
            ece_before=ece['before'][0],
            ece_after=ece['after'][0],
            reliability_before=ece['before'][1],
            reliability_after=ece['after'][1])
        return {
            k: v
            for k, v in self.summary.items() if not k.startswith('reli')
        }


def run_split(runner, split, temperature, num_bins):
    """Run the val (or test) loop with a ``ScoreCollector`` added to its
    evaluator; its metrics (all ranks) and its summary (rank 0, else None)."""
    collector = ScoreCollector(temperature, num_bins)
    loop_evaluator = getattr(runner, f'{split}_evaluator')
    loop_evaluator.metrics.append(collector)
    # a second loop in the same runner loads the checkpoint again, so that
    # hooks that act on loading (EMAHook's after_load_checkpoint) see it
    runner._has_loaded = False
    metrics = getattr(runner, split)()
    return {
        k[len(PREFIX) + 1:]: v
        for k, v in metrics.items() if k.startswith(PREFIX + '/')
    }, collector.summary


def test_option(cfg, temperature):
    """The ``--cfg-options`` item that gives ``tools/test.py`` the scaled
    ECE, or None when the config's ``test_evaluator`` has no ECEMetric."""
    evaluator = cfg.get('test_evaluator', None)
    items = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    for i, item in enumerate(items):
        if isinstance(item,
                      dict) and item.get('type') in ('ECEMetric', ECEMetric):
            key = 'test_evaluator' if items is not evaluator else \
                f'test_evaluator.{i}'
            return f'{key}.temperature={temperature:.6g}'
    return None


def write_checkpoint(src, dst, record):
    """Copy ``src`` to ``dst`` (atomically) with ``meta[PREFIX] = record``."""
    from mmengine.runner import CheckpointLoader
    ckpt = CheckpointLoader.load_checkpoint(src, map_location='cpu')
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        ckpt = dict(state_dict=ckpt)  # a bare state dict
    ckpt['meta'] = dict(ckpt.get('meta') or {}, **{PREFIX: record})
    with atomic_write(dst, 'wb') as f:
        torch.save(ckpt, f)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Fit a softmax temperature on val, store it in the '
        'checkpoint meta (cds_mm)')
    parser.add_argument('config', help='the classifier config')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='checkpoint to write (default: calibrated_<name> beside it)')
    parser.add_argument(
        '--test',
        action='store_true',
        help='also report the test split before/after scaling by the val T')
    parser.add_argument(
        '--num-bins', type=int, default=15, help='ECE bins (default 15)')
    parser.add_argument(
        '--dump-json', help='write the record and reliability bins here')
    parser.add_argument('--work-dir', help='where the runner logs')
    tool_args.add_common_args(parser)
    args = parser.parse_args(argv)
    tool_args.check_common_args(parser, args)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint file not found: {args.checkpoint}')
    if args.num_bins < 1:
        parser.error(f'--num-bins must be >= 1, got {args.num_bins}')
    if args.out is None:
        args.out = osp.join(
            osp.dirname(args.checkpoint),
            'calibrated_' + osp.basename(args.checkpoint))
    return args


def main(argv=None):
    from mmengine.dist import is_main_process
    args = parse_args(argv)
    cfg = tool_args.apply_common_args(tool_args.load_config(args.config), args)
    cfg.load_from = args.checkpoint
    # a val loop outside training: no save_best (CheckpointHook would write,
    # and fails without before_train)
    cfg.setdefault('default_hooks', {})['checkpoint'] = None
    splits = ('val', 'test') if args.test else ('val', )
    tool_args.check_data_or_exit(cfg, tuple(f'{s}_dataloader' for s in splits))
    runner = tool_args.build_runner(cfg)
    val, val_summary = run_split(runner, 'val', None, args.num_bins)
    t = val['temperature']
    record = dict(temperature=t, num_bins=args.num_bins)
    record.update({f'val_{k}': val[k] for k in val if k != 'temperature'})
    summaries = dict(val=val_summary)
    if args.test:
        test, summaries['test'] = run_split(runner, 'test', t, args.num_bins)
        record.update(
            {f'test_{k}': test[k]
             for k in test if k != 'temperature'})
    record.update(
        config=args.config,
        cfg_options=dict(args.cfg_options or {}),
        checkpoint=osp.basename(args.checkpoint))
    if not is_main_process():
        return record
    write_checkpoint(args.checkpoint, args.out, record)
    if args.dump_json:
        with atomic_write(args.dump_json) as f:
            json.dump(dict(record, summaries=summaries), f, indent=1)
    print(f'{PREFIX}: ' + json.dumps(record))
    option = test_option(cfg, t)
    print(f'T = {t:.4f} (val NLL {record["val_nll_before"]:.4f} -> '
          f'{record["val_nll_after"]:.4f}, ECE {record["val_ece_before"]:.2f}'
          f' -> {record["val_ece_after"]:.2f} %), written to {args.out}')
    mine = ' <your --cfg-options>' if args.cfg_options else ''
    print('scaled test ECE: ' +
          (f'python tools/test.py {args.config} {args.out} --cfg-options'
           f'{mine} {option}' if option else "add dict(type='ECEMetric', "
           f'temperature={t:.6g}) to test_evaluator'))
    return record


if __name__ == '__main__':
    main()
