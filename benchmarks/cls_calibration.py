"""Temperature scaling of the classification benchmark's runs: test ECE, NLL
and top-1 before and after a softmax temperature fitted on val.

For every run of a ``cls_accuracy_seeds.py`` results file (default
``benchmarks/results/cls_accuracy.json``, methods off / dsn / cds, the
protocol's runs; ``--ablation`` picks an ablation's), its best-val checkpoint
(the run's ``checkpoint``) goes through ``tools/calibrate_temperature.py
--test`` in a subprocess with the run's own options: ``T`` is fitted on the
val split by NLL, and val and test NLL and ECE (``ECEMetric``, 15 bins) are
measured at ``T = 1`` and at the fitted ``T``. Test top-1 is read from the
reliability bins before and after: scaling cannot change it. Per run the
results hold method, seed, ``temperature``, ``{val,test}_{nll,ece}_{before,
after}``, ``top1_before`` / ``top1_after`` and the test reliability bins;
``summary`` holds mean and sample std per method. With a figure folder
(``--fig-dir``, default ``resources/`` as ``make_figures.py``) it also draws
the test reliability diagrams of ``--seed`` before and after
(``calibration_reliability_{before,after}.png``)::

    python benchmarks/cls_calibration.py \\
        --results benchmarks/results/cls_accuracy.json \\
        --out benchmarks/results/cls_calibration.json

CPU-scale (2 cores): no training, one val and one test pass per run.
Resumable: a run whose calibration the ``--out`` file or its work dir holds
for the same checkpoint is not repeated; the file is rewritten after every
run. A run whose checkpoint is gone is reported with the command that trains
it again (``cls_accuracy_seeds.py --retrain``, which replaces its recorded
numbers); the others go on.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # cds_mm from this checkout

from benchmarks import cls_accuracy_seeds as cls
from benchmarks.common import git_commit, mean_std, run, say, stack_versions
from cds_mm.utils import atomic_write

NAMES = dict(off='baseline', dsn='DSN', cds='CDS')
MEASURED = ('temperature', 'val_nll_before', 'val_nll_after', 'val_ece_before',
            'val_ece_after', 'test_nll_before', 'test_nll_after',
            'test_ece_before', 'test_ece_after')


def top1(bins):
    """Top-1 in percent from ``ECEMetric`` reliability bins: the hits per
    bin are whole numbers (``acc`` is stored to 6 decimals)."""
    hits = sum(round(c * a) for c, a in zip(bins['count'], bins['acc']))
    return 100 * hits / sum(bins['count'])


def retrain_hint(data, src):
    """The command that trains the run ``src`` of results ``data`` again."""
    a = data['args']
    cmd = (f'python benchmarks/cls_accuracy_seeds.py --modes {src["mode"]} '
           f'--seeds {src["seed"]} --retrain --results {a["results"]}')
    if a.get('workers') is not None:
        cmd += f' --workers {a["workers"]}'
    if src.get('variant'):
        cmd += f' --ablation {src["variant"]} --cfg-options ' + ' '.join(
            src.get('extra_options', []))
    return cmd


def calibrate(args, data, src, tag, recorded):
    """The calibration of one run: recorded for the same checkpoint, else
    measured through tools/calibrate_temperature.py."""
    key = (src.get('variant'), src['mode'], src['seed'])
    prefix = f'{src["variant"]}_' if src.get('variant') else ''
    work = osp.join(args.work_dir, f'{prefix}{src["mode"]}_seed{src["seed"]}')
    done_file = osp.join(work, 'calibration.json')
    old = recorded.get(key)
    if old is None and osp.isfile(done_file):
        with open(done_file) as f:
            old = json.load(f)
    if old is not None and old['checkpoint'] == src['checkpoint']:
        say(f'[{tag}] calibrated before, not repeated')
        return old
    ckpt = osp.join(REPO, src['checkpoint'])
    if not osp.isfile(ckpt):
        raise FileNotFoundError(
            f'checkpoint {src["checkpoint"]} is missing; train the run again '
            f'with: {retrain_hint(data, src)}')
    os.makedirs(work, exist_ok=True)
    dump, start = osp.join(work, 'calibration_dump.json'), time.time()
    say(f'[{tag}] fitting T on val, testing in {work}')
    run([
        sys.executable, 'tools/calibrate_temperature.py',
        data['args'].get('config') or cls.CONFIG, ckpt, '--test', '--out',
        osp.join(work, 'calibrated.pth'), '--dump-json', dump, '--work-dir',
        osp.join(work, 'runner'),
        *(['--cfg-options', *src['cfg_options']] if src['cfg_options'] else [])
    ], osp.join(work, 'calibrate.log'))
    with open(dump) as f:
        record = json.load(f)
    bins = record['summaries']['test']
    res = dict(
        method=src['mode'],
        seed=src['seed'],
        **({
            'variant': src['variant']
        } if src.get('variant') else {}),
        **{k: record[k]
           for k in MEASURED},
        top1_before=top1(bins['reliability_before']),
        top1_after=top1(bins['reliability_after']),
        top1_recorded=src['top1'],
        val_num_samples=record['val_num_samples'],
        test_num_samples=record['test_num_samples'],
        num_bins=record['num_bins'],
        reliability_before=bins['reliability_before'],
        reliability_after=bins['reliability_after'],
        checkpoint=src['checkpoint'],
        calibrate_s=round(time.time() - start, 1),
        git_commit=git_commit(),
        versions=stack_versions())
    with atomic_write(done_file) as f:
        json.dump(res, f, indent=1)
    return res


def summary(runs):
    """Mean and sample std (None for one run) per method of every measured
    number and of top-1."""
    out = {}
    for method in dict.fromkeys(r['method'] for r in runs):
        rows = [r for r in runs if r['method'] == method]
        out[method] = {}
        for k in MEASURED + ('top1_before', 'top1_after'):
            vals = [r[k] for r in rows]
            out[method][k] = dict(
                mean=statistics.mean(vals),
                std=statistics.stdev(vals) if len(vals) > 1 else None)
    return out


def write_results(args, runs, missing):
    out = dict(
        benchmark='benchmarks/cls_calibration.py',
        source=args.results,
        protocol='softmax temperature T fitted on the val split by NLL '
        '(tools/calibrate_temperature.py), test scaled by the val T; ECE '
        'with 15 equal-width bins (ECEMetric)',
        date=datetime.date.today().isoformat(),
        # the figure folder as the repository names it, not this machine
        args=dict(
            vars(args),
            fig_dir=args.fig_dir and osp.relpath(args.fig_dir, REPO)),
        runs=runs,
        summary=summary(runs) if runs else {},
        missing=missing)
    with atomic_write(args.out) as f:
        json.dump(out, f, indent=1)


def figures(args, runs):
    """Test reliability diagrams of ``args.seed`` before and after, drawn
    by ``make_figures.reliability``."""
    from benchmarks.make_figures import reliability
    os.makedirs(args.fig_dir, exist_ok=True)
    for when in ('before', 'after'):
        data = dict(runs=[
            dict(
                mode=r['method'],
                seed=r['seed'],
                reliability=r[f'reliability_{when}'],
                ece=r[f'test_ece_{when}']) for r in runs
            if r['method'] in NAMES and 'variant' not in r
        ])
        reliability(
            data,
            osp.join(args.fig_dir, f'calibration_reliability_{when}.png'),
            args.seed,
            title=f'Test reliability {when} temperature scaling')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--results', default='benchmarks/results/cls_accuracy.json')
    parser.add_argument(
        '--out', default='benchmarks/results/cls_calibration.json')
    parser.add_argument('--modes', nargs='+', default=['off', 'dsn', 'cds'])
    parser.add_argument(
        '--ablation',
        default=None,
        help="the results file's ablation to calibrate (default: the "
        "protocol's runs)")
    parser.add_argument(
        '--work-dir', default='work_dirs/bench_cls_calibration')
    parser.add_argument(
        '--fig-dir',
        default=osp.join(REPO, 'resources'),
        help="reliability diagrams go here ('' for none)")
    parser.add_argument(
        '--seed', type=int, default=0, help='the seed the figures show')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with open(args.results) as f:
        data = json.load(f)
    data['args'].setdefault('results', args.results)
    todo = [
        r for r in data['runs']
        if r['mode'] in args.modes and r.get('variant') == args.ablation
    ]
    recorded = {}
    if osp.isfile(args.out):
        with open(args.out) as f:
            recorded = {(r.get('variant'), r['method'], r['seed']): r
                        for r in json.load(f)['runs']}
    mine = {(r.get('variant'), r['mode'], r['seed']) for r in todo}
    others = [r for k, r in recorded.items() if k not in mine]
    runs, missing = [], []
    for i, src in enumerate(todo):
        tag = f'run {i + 1}/{len(todo)} {src["mode"]} seed {src["seed"]}'
        try:
            res = calibrate(args, data, src, tag, recorded)
        except (FileNotFoundError, SystemExit) as exc:
            missing.append(
                dict(method=src['mode'], seed=src['seed'], reason=str(exc)))
            say(f'[{tag}] {exc}')
            continue
        runs.append(res)
        say(f'[{tag}] T {res["temperature"]:.3f}: test ECE '
            f'{res["test_ece_before"]:.2f} -> {res["test_ece_after"]:.2f}, '
            f'NLL {res["test_nll_before"]:.4f} -> '
            f'{res["test_nll_after"]:.4f}, top-1 {res["top1_after"]:.2f}')
        write_results(args, others + runs, missing)
    write_results(args, others + runs, missing)
    say('\n| method | T (val) | test ECE before (%) | test ECE after (%) | '
        'test NLL before | test NLL after |')
    say('|---|---|---|---|---|---|')
    for method in dict.fromkeys(r['method'] for r in runs):
        rows = [r for r in runs if r['method'] == method]
        cols = [
            mean_std([r[k] for r in rows])
            for k in ('temperature', 'test_ece_before', 'test_ece_after')
        ] + [
            '{:.4f} ± {:.4f}'.format(
                statistics.mean(v),
                statistics.stdev(v) if len(v) > 1 else 0.0)
            for v in ([r[k] for r in rows]
                      for k in ('test_nll_before', 'test_nll_after'))
        ]
        say(f'| {NAMES.get(method, method)} | ' + ' | '.join(cols) + ' |')
    if args.fig_dir and runs:
        figures(args, runs)
    if missing:
        raise SystemExit(f'{len(missing)} run(s) not calibrated:\n' +
                         '\n'.join(m['reason'] for m in missing))


if __name__ == '__main__':
    main()
