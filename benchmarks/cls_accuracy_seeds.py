"""Baseline vs DSN vs CDS on Fashion-MNIST, several seeds; prints one table.

Every method trains the same ResNet-18 (CIFAR stem, 1/4 width) on the same
images, views, epochs and seeds; only ``model.mode`` differs. The checkpoint
with the best accuracy on a val split carved from train is tested once on the
test split. Runs go through ``tools/train.py`` / ``tools/test.py`` in
subprocesses, so the numbers are what a user gets from the CLI.

    python benchmarks/cls_accuracy_seeds.py --epochs 4 --train-samples 10000

CPU-scale evidence only (2 cores); see the README for what it does and does
not show. The configs train on the GPU when one is visible (mmengine picks
the device), so the same command runs unchanged on a GPU machine; there
``--parallel`` runs several (mode, seed) runs at once and ``--workers`` sets
the data loader processes per run (data loading is the CPU-bound part).
results.json is rewritten after every finished run, so a run cut short
still leaves the finished ones.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import os.path as osp
import pickle
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
DEBIAN_ROOT = '/usr/share/datasets/fashion-mnist'  # dataset-fashion-mnist


def ece(scores: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Expected calibration error in percent (equal-width confidence bins)."""
    conf, pred = scores.max(1), scores.argmax(1)
    correct = (pred == labels).astype(float)
    bins = np.minimum((conf * num_bins).astype(int), num_bins - 1)
    total = 0.0
    for b in range(num_bins):
        m = bins == b
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return 100 * total


def run(cmd, log, env=None):
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f'failed ({proc.returncode}): {" ".join(cmd)}; see {log}')


def one_run(args, mode, seed):
    work = osp.join(args.work_dir, f'{mode}_seed{seed}')
    os.makedirs(work, exist_ok=True)
    opts = [f'model.mode={mode}', f'randomness.seed={seed}',
            f'train_cfg.max_epochs={args.epochs}',
            f'param_scheduler.T_max={args.epochs}',
            f'train_dataloader.dataset.max_samples={args.train_samples}',
            f'val_dataloader.dataset.max_samples={args.val_samples}']
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={args.data_root}')
        if args.workers is not None:
            opts.append(f'{split}_dataloader.num_workers={args.workers}')
            if args.workers == 0:  # torch refuses persistent workers without workers
                opts.append(f'{split}_dataloader.persistent_workers=False')
    env = child_env(args)
    py = sys.executable
    start = time.time()
    run([py, 'tools/train.py', CONFIG, '--work-dir', work, '--cfg-options', *opts],
        osp.join(work, 'train.log'), env)
    train_s = time.time() - start
    best = glob.glob(osp.join(work, 'best_accuracy_top1_epoch_*.pth'))
    if len(best) != 1:
        raise SystemExit(f'expected one best checkpoint in {work}, got {best}')
    epoch = int(best[0].rsplit('_', 1)[1].split('.')[0])
    preds = osp.join(work, 'test_preds.pkl')
    run([py, 'tools/test.py', CONFIG, best[0], '--work-dir', osp.join(work, 'test'),
         '--out', preds, '--cfg-options', *opts], osp.join(work, 'test.log'), env)
    test_s = time.time() - start - train_s
    with open(preds, 'rb') as f:
        samples = pickle.load(f)
    scores = np.stack([np.asarray(s['pred_score']) for s in samples])
    labels = np.array([int(np.asarray(s['gt_label']).reshape(-1)[0]) for s in samples])
    acc = 100 * float((scores.argmax(1) == labels).mean())
    return dict(mode=mode, seed=seed, best_epoch=epoch, top1=acc,
                ece=ece(scores, labels), train_s=train_s, test_s=test_s,
                n_test=len(labels))


def child_env(args):
    """The runs' environment: with several runs at once, split the cores between them.

    Each training process would otherwise start one intra-op thread per core; an explicit
    ``OMP_NUM_THREADS`` in the caller's environment wins.
    """
    env = dict(os.environ)
    if args.parallel > 1 and 'OMP_NUM_THREADS' not in env:
        env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // args.parallel))
    return env


def write_results(args, results):
    tmp = osp.join(args.work_dir, 'results.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(dict(args=vars(args), runs=results), f, indent=1)
    os.replace(tmp, osp.join(args.work_dir, 'results.json'))


def fmt(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{mean:.2f} ± {std:.2f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', default=DEBIAN_ROOT)
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--train-samples', type=int, default=10000)
    parser.add_argument('--val-samples', type=int, default=5000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--modes', nargs='+', default=['off', 'dsn', 'cds'])
    parser.add_argument('--work-dir', default='work_dirs/bench_cls_accuracy')
    parser.add_argument('--parallel', type=int, default=1,
                        help='runs at once, each in its own train/test subprocesses')
    parser.add_argument('--workers', type=int, default=None,
                        help='data loader workers per run (default: the config\'s)')
    args = parser.parse_args()
    if args.parallel < 1 or (args.workers is not None and args.workers < 0):
        parser.error('--parallel must be >= 1 and --workers >= 0')
    os.makedirs(args.work_dir, exist_ok=True)

    jobs = [(mode, seed) for seed in args.seeds for mode in args.modes]
    done, failures = {}, []
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {pool.submit(one_run, args, mode, seed): i
                   for i, (mode, seed) in enumerate(jobs)}
        for fut in concurrent.futures.as_completed(futures):
            try:
                res = fut.result()
            except (SystemExit, Exception) as exc:  # one run failed; the others go on
                mode, seed = jobs[futures[fut]]
                failures.append(f'{mode} seed {seed}: {exc}')
                print(exc, file=sys.stderr, flush=True)
                continue
            print(json.dumps(res), flush=True)
            done[futures[fut]] = res
            write_results(args, [done[i] for i in sorted(done)])
    results = [done[i] for i in sorted(done)]
    write_results(args, results)
    print(f'{len(results)}/{len(jobs)} runs in {time.time() - start:.0f} s '
          f'(--parallel {args.parallel})', flush=True)
    if not results:
        raise SystemExit('\n'.join(failures))

    names = dict(off='baseline', dsn='DSN', cds='CDS')
    print(f'\nFashion-MNIST test top-1 / ECE (%), {len(args.seeds)} seeds, '
          f'{args.epochs} epochs on {args.train_samples} train images; '
          'checkpoint picked on val')
    print('| method | test top-1 | test ECE | best epoch (val) | train time (s) |')
    print('|---|---|---|---|---|')
    for mode in args.modes:
        rows = [r for r in results if r['mode'] == mode]
        if not rows:
            continue
        print(f'| {names.get(mode, mode)} | {fmt([r["top1"] for r in rows])} | '
              f'{fmt([r["ece"] for r in rows])} | '
              f'{",".join(str(r["best_epoch"]) for r in rows)} | '
              f'{fmt([r["train_s"] for r in rows])} |')
    if failures:
        raise SystemExit(f'{len(failures)} run(s) failed:\n' + '\n'.join(failures))


if __name__ == '__main__':
    main()
