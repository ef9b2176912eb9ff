"""Baseline vs DSN vs CDS on Fashion-MNIST at convergence, several seeds.

Every method trains the same ResNet-18 (CIFAR stem, 1/4 width) on the same
images, views, epochs and seeds; only ``model.mode`` differs. The default
protocol is the converged one of benchmarks/README.md: 10,000 training images,
a 5,000-image val split carved from train, the 10,000 test images at their own
28 px, 15 epochs of one-cycle SGD (peak lr 0.1 at 15 %, nesterov), batch 128.
The checkpoint with the best val accuracy is tested once on the test split.
Runs go through ``tools/train.py`` / ``tools/test.py`` in subprocesses, so
the numbers are what a user gets from the CLI. ECE comes from the registered
``cds_mm.evaluation.ECEMetric``.

    python benchmarks/cls_accuracy_seeds.py --workers 1 \\
        --results benchmarks/results/cls_accuracy.json

Resumable: a run whose ``result.json`` exists with the same options, or
which the ``--results`` file already holds with the same options (a new
machine has the committed file but no work dirs), is not repeated, and a run
cut short resumes from its last epoch. Runs also record the digest of the
config they trained (the config file and its bases merged with the options):
a recorded run of another config is trained again, and a run of the same
config under another name (e.g. an ablation whose option has since become
the config's default) is taken, with ``taken_from`` naming it. The results
JSON (protocol, git commit, per-seed numbers, per-epoch val accuracy and
losses, reliability bins) is rewritten after every finished run. Progress
(run k of N, epoch, val accuracy, ETA) is printed while a run trains.
``--cfg-options`` adds config overrides to every run; an ablation names
itself with ``--ablation``, so that several share one results file (a run is
keyed by ablation, mode and seed; the file keeps the other ablations' runs)::

    python benchmarks/cls_accuracy_seeds.py --workers 1 --modes cds \
        --seeds 0 --ablation view2_half --cfg-options model.view2_scale=0.5 \
        --results benchmarks/results/cls_ablations.json

On a GPU machine the same command runs unchanged; there ``--parallel`` runs
several (mode, seed) runs at once and ``--workers`` sets the data loader
processes per run (data loading is the CPU-bound part).
"""
import argparse
import concurrent.futures
import datetime
import glob
import json
import os
import os.path as osp
import pickle
import re
import shutil
import statistics
import sys
import time
import warnings

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # cds_mm from this checkout

from benchmarks.common import (best_checkpoint, config_digest, earlier_result,
                               git_commit, mean_std, other_runs, recorded_runs,
                               run, say, stack_versions, take_twin, twin_run,
                               watch_training)
from cds_mm.utils import atomic_write

CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
DEBIAN_ROOT = '/usr/share/datasets/fashion-mnist'  # dataset-fashion-mnist
# what the protocol says of a config's model and input size
MODELS = {
    CONFIG:
    'Fashion-MNIST at 28 px, ResNet-18 (CIFAR stem, 1/4 width)',
    'configs/demo/resnet18-w16_cds_1xb128_fashionmnist-56px.py':
    'Fashion-MNIST upsampled to 56 px, ResNet-18 (standard stem, 1/4 width)'
}
PROTOCOL = (
    '{model}; '
    '{train_samples} training images, {val_samples} val images carved from '
    'train, the 10,000 test images; {epochs} epochs of SGD one-cycle (peak '
    'lr 0.1 at 15 %, nesterov, wd 5e-4), batch 128, crop with 4 px padding '
    '+ flip; the best-val checkpoint is tested once; config {config}')
NUM_BINS = 15
VAL_RE = re.compile(r'Epoch\(val\)\s+\[(\d+)\]\[\s*\d+/\d+\]\s+'
                    r'accuracy/top1:\s*([\d.]+)')


def ece_stats(samples):
    """Test top-1, ECE and reliability bins of tools/test.py predictions.

    Uses the registered ``ECEMetric`` (the number the test log prints), so
    the benchmark and the metric cannot disagree.

    Args:
        samples (list[dict]): The ``--out`` pickle of ``tools/test.py``.

    Returns:
        dict: ``top1`` and ``ece`` in percent, and ``reliability``: per-bin
        ``count``, ``acc`` and ``conf`` lists (equal-width bins).
    """
    from cds_mm.evaluation.metrics import ECEMetric
    metric = ECEMetric(num_bins=NUM_BINS, save_diagram=False)
    metric.process(None, samples)
    res = metric.compute_metrics(metric.results)
    conf = np.array([r['conf'] for r in metric.results], dtype=np.float64)
    hit = np.array([r['correct'] for r in metric.results], dtype=np.float64)
    import torch
    stats = ECEMetric.bin_stats(
        torch.from_numpy(conf), torch.from_numpy(hit), NUM_BINS)
    return dict(
        top1=res['accuracy'],
        ece=res['ece'],
        reliability={
            k: [round(float(x), 6) for x in v]
            for k, v in stats.items()
        })


def ece(scores: np.ndarray, labels: np.ndarray) -> float:
    """ECE in percent of class scores, through ``ECEMetric``.

    Shapes:
        scores: (N, C) class probabilities.
        labels: (N,) int class ids.
    """
    samples = [
        dict(pred_score=s, gt_label=np.array([y]))
        for s, y in zip(scores, labels)
    ]
    return ece_stats(samples)['ece']


def train_with_progress(cmd, log, env, tag, epochs, state):
    """Run the training subprocess; print its epoch, val top-1 and ETA."""

    def report(line, val, left):
        if val:
            line += f', val top-1 {float(val[1]):.2f} (epoch {val[0]})'
        state['run_left'][tag] = left
        say(f'[{tag}] {line}; ETA this run {left / 60:.0f} min, '
            f'all runs {state["eta"]() / 60:.0f} min')

    try:
        watch_training(cmd, log, epochs, VAL_RE, report, env)
    finally:
        state['run_left'].pop(tag, None)


def read_curves(work):
    """Per-epoch val top-1 and per-epoch mean losses from mmengine scalars.

    A resumed run has several timestamped folders; later ones win.

    Returns:
        tuple[dict[int, float], dict[str, list[float]]]: Val top-1 by
        epoch, and the mean of each ``loss*`` scalar per training epoch.
    """
    val, losses = {}, {}
    files = sorted(glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json')))
    for path in files:
        sums = {}
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'accuracy/top1' in rec:
                    val[int(rec['step'])] = rec['accuracy/top1']
                elif 'epoch' in rec:
                    for k, v in rec.items():
                        if k.startswith('loss'):
                            s = sums.setdefault(k, {}).setdefault(
                                rec['epoch'], [0.0, 0])
                            s[0] += v
                            s[1] += 1
        for k, per_epoch in sums.items():
            for e, (s, c) in per_epoch.items():
                losses.setdefault(k, {})[e] = s / c
    loss_lists = {
        k: [round(v[e], 6) for e in sorted(v)]
        for k, v in sorted(losses.items())
    }
    return {e: round(v, 4) for e, v in sorted(val.items())}, loss_lists


def schedule_opts(epochs):
    """Options fitting the config's one-cycle schedule to ``epochs``."""
    warm = round(0.15 * epochs, 4)
    return [
        f'train_cfg.max_epochs={epochs}', f'param_scheduler.0.end={warm}',
        f'param_scheduler.1.begin={warm}', f'param_scheduler.1.end={epochs}'
    ]


def run_opts(args, mode, seed):
    opts = [
        f'model.mode={mode}', f'randomness.seed={seed}',
        *schedule_opts(args.epochs),
        f'train_dataloader.dataset.max_samples={args.train_samples}',
        f'val_dataloader.dataset.val_size={args.val_samples}',
        f'train_dataloader.dataset.val_size={args.val_samples}'
    ]
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={args.data_root}')
        if args.workers is not None:
            opts.append(f'{split}_dataloader.num_workers={args.workers}')
            if args.workers == 0:  # torch refuses persistent workers then
                opts.append(f'{split}_dataloader.persistent_workers=False')
    return opts + list(args.cfg_options)


def variant_fields(args):
    """An ablation run's name and the options it adds; none for the
    protocol's own runs."""
    if not args.variant:
        return {}
    return dict(variant=args.variant, extra_options=list(args.cfg_options))


def one_run(args, mode, seed, tag, state):
    """Train, test the best-val checkpoint once; the run's result dict."""
    prefix = f'{args.variant}_' if args.variant else ''
    work = osp.join(args.work_dir, f'{prefix}{mode}_seed{seed}')
    os.makedirs(work, exist_ok=True)
    opts = run_opts(args, mode, seed)
    digest = config_digest(args.config, opts)
    done_file = osp.join(work, 'result.json')
    if args.retrain:  # a code change the options and config do not show
        shutil.rmtree(work)
        os.makedirs(work)
        res = None
    else:
        res = earlier_result(state['recorded'].get((args.variant, mode, seed)),
                             done_file, opts, digest)
    if res is not None:
        say(f'[{tag}] finished before with the same options, not repeated')
        return res
    twin = None if args.retrain else twin_run(digest, args.results,
                                              args.work_dir)
    if twin is not None:
        return take_twin(
            twin,
            done_file,
            tag, ('variant', 'extra_options'),
            mode=mode,
            seed=seed,
            cfg_options=opts,
            **variant_fields(args))
    env, py, start = child_env(args), sys.executable, time.time()
    commit = git_commit()  # the code the run trains with
    resume = ['--resume'] if osp.isfile(osp.join(work, 'last_checkpoint')) \
        else []
    say(f'[{tag}] training{" (resumed)" if resume else ""} in {work}')
    train_with_progress([
        py, 'tools/train.py', args.config, '--work-dir', work, *resume,
        '--cfg-options', *opts
    ], osp.join(work, 'train.log'), env, tag, args.epochs, state)
    train_s = time.time() - start
    val, losses = read_curves(work)
    best, epoch = best_checkpoint(work, 'accuracy_top1', val)
    if best is None:
        raise SystemExit(f'no best checkpoint in {work}')
    preds = osp.join(work, 'test_preds.pkl')
    run([
        py, 'tools/test.py', args.config, best, '--work-dir',
        osp.join(work, 'test'), '--out', preds, '--cfg-options', *opts
    ], osp.join(work, 'test.log'), env)
    with open(preds, 'rb') as f:
        samples = pickle.load(f)
    val_top1 = [val[e] for e in sorted(val)]
    res = dict(
        mode=mode,
        seed=seed,
        **variant_fields(args),
        best_epoch=epoch,
        **ece_stats(samples),
        n_test=len(samples),
        best_val_top1=max(val_top1) if val_top1 else None,
        val_top1=val_top1,
        losses=losses,
        train_s=round(train_s, 1),
        test_s=round(time.time() - start - train_s, 1),
        checkpoint=osp.relpath(best, REPO),
        cfg_options=opts,
        config_digest=digest,
        git_commit=commit,
        versions=stack_versions())
    with atomic_write(done_file) as f:
        json.dump(res, f, indent=1)
    return res


def run_key(res):
    """A run's key in the results file: variant (None: the protocol's own
    runs), mode and seed."""
    return res.get('variant'), res['mode'], res['seed']


def child_env(args):
    """The runs' environment: with several runs at once, split the cores.

    Each training process would otherwise start one intra-op thread per
    core; an explicit ``OMP_NUM_THREADS`` in the caller's environment wins.
    """
    env = dict(os.environ)
    if args.parallel > 1 and 'OMP_NUM_THREADS' not in env:
        env['OMP_NUM_THREADS'] = str(
            max(1, (os.cpu_count() or 1) // args.parallel))
    return env


def write_results(args, commit, results, jobs, others=()):
    """The results JSON: protocol, the commit the runs started from,
    finished runs (``others`` are other variants' runs, kept first), this
    call's missing runs."""
    have = {(r['mode'], r['seed']) for r in results}
    out = dict(
        benchmark='benchmarks/cls_accuracy_seeds.py',
        protocol=PROTOCOL.format(
            model=MODELS.get(args.config, 'Fashion-MNIST'), **vars(args)),
        git_commit=commit,
        date=datetime.date.today().isoformat(),
        args=vars(args),
        runs=list(others) + results,
        missing=[dict(mode=m, seed=s) for m, s in jobs if (m, s) not in have])
    with atomic_write(args.results) as f:
        json.dump(out, f, indent=1)


class DeprecatedAlias(argparse.Action):
    """An old flag name: stores its value and warns."""

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(
            f'{option_string} is deprecated; use --ablation',
            DeprecationWarning,
            stacklevel=2)
        setattr(namespace, self.dest, values)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', default=DEBIAN_ROOT)
    parser.add_argument(
        '--config',
        default=CONFIG,
        help='the classifier config (its model.mode is set per --modes)')
    parser.add_argument('--epochs', type=int, default=15)
    parser.add_argument('--train-samples', type=int, default=10000)
    parser.add_argument('--val-samples', type=int, default=5000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--modes', nargs='+', default=['off', 'dsn', 'cds'])
    parser.add_argument('--work-dir', default='work_dirs/bench_cls_accuracy')
    parser.add_argument(
        '--ablation',
        dest='variant',
        default=None,
        help='name of an ablation (with --cfg-options), as in '
        'det_accuracy_seeds.py: its runs train in '
        '<work-dir>/<ablation>_<mode>_seed<s> and are keyed by it in the '
        "results file (field 'variant', as the committed files have it)")
    parser.add_argument(
        '--variant',
        dest='variant',
        action=DeprecatedAlias,
        help='deprecated alias of --ablation')
    parser.add_argument(
        '--results',
        default=None,
        help='results JSON (default: <work-dir>/results.json)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides added to every run')
    parser.add_argument(
        '--retrain',
        action='store_true',
        help='train the selected runs again even when recorded (after a '
        'change of the code, which options and config digests do not '
        'show); their work dirs are emptied first')
    parser.add_argument(
        '--parallel',
        type=int,
        default=1,
        help='runs at once, each in its own subprocesses')
    parser.add_argument(
        '--workers',
        type=int,
        default=None,
        help="data loader workers per run (default: the "
        "config's)")
    args = parser.parse_args(argv)
    if args.parallel < 1 or (args.workers is not None and args.workers < 0):
        parser.error('--parallel must be >= 1 and --workers >= 0')
    if args.results is None:
        args.results = osp.join(args.work_dir, 'results.json')
    return args


def main(argv=None):
    args = parse_args(argv)
    commit = git_commit()  # the code the runs start from
    os.makedirs(args.work_dir, exist_ok=True)
    jobs = [(mode, seed) for seed in args.seeds for mode in args.modes]
    tags = [
        f'run {i + 1}/{len(jobs)} {m} seed {s}'
        for i, (m, s) in enumerate(jobs)
    ]
    done, failures, durations = {}, [], []
    start = time.time()

    def eta():
        """Seconds left: the running runs' ETAs plus the runs not started."""
        per_run = statistics.mean(durations) if durations else \
            max(state['run_left'].values(), default=0) * 2
        queued = len(jobs) - len(done) - len(failures) - \
            len(state['run_left'])
        return max(state['run_left'].values(), default=0) + \
            max(queued, 0) * per_run / args.parallel

    recorded = recorded_runs(args.results, run_key)
    others = other_runs(recorded, args.variant, jobs)
    state = dict(run_left={}, eta=eta, recorded=recorded)
    if not osp.isfile(args.results):  # a file that lists the missing runs
        write_results(args, commit, [], jobs)

    def timed(i):
        t = time.time()
        res = one_run(args, *jobs[i], tags[i], state)
        if res.get('train_s') and time.time() - t > 60:
            durations.append(time.time() - t)
        return res

    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        futures = {pool.submit(timed, i): i for i in range(len(jobs))}
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            try:
                res = fut.result()
            except (SystemExit, Exception) as exc:  # the others go on
                failures.append(f'{tags[i]}: {exc}')
                say(f'[{tags[i]}] FAILED: {exc}')
                continue
            say(f'[{tags[i]}] test top-1 {res["top1"]:.2f}, ECE '
                f'{res["ece"]:.2f}, best val epoch {res["best_epoch"]}/'
                f'{args.epochs}')
            done[i] = res
            write_results(args, commit, [done[k] for k in sorted(done)], jobs,
                          others)
    results = [done[i] for i in sorted(done)]
    write_results(args, commit, results, jobs, others)
    say(f'{len(results)}/{len(jobs)} runs in {time.time() - start:.0f} s; '
        f'results in {args.results}')
    if not results:
        raise SystemExit('\n'.join(failures))

    names = dict(off='baseline', dsn='DSN', cds='CDS')
    say(f'\nFashion-MNIST test top-1 / ECE (%), seeds {args.seeds}, '
        f'{args.epochs} epochs on {args.train_samples} train images; '
        'checkpoint picked on val')
    say('| method | test top-1 | test ECE | best epoch (val) |')
    say('|---|---|---|---|')
    for mode in args.modes:
        rows = [r for r in results if r['mode'] == mode]
        if rows:
            say(f'| {names.get(mode, mode)} | '
                f'{mean_std([r["top1"] for r in rows])} | '
                f'{mean_std([r["ece"] for r in rows])} | '
                f'{",".join(str(r["best_epoch"]) for r in rows)} |')
    if failures:
        raise SystemExit(f'{len(failures)} run(s) failed:\n' +
                         '\n'.join(failures))


if __name__ == '__main__':
    main()
