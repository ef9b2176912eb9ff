"""Baseline vs DSN vs CDS on Fashion-MNIST, several seeds; prints one table.

Every method trains the same ResNet-18 (CIFAR stem, 1/4 width) on the same
images, views, epochs and seeds; only ``model.mode`` differs. The checkpoint
with the best accuracy on a val split carved from train is tested once on the
test split. Runs go through ``tools/train.py`` / ``tools/test.py`` in
subprocesses, so the numbers are what a user gets from the CLI.

    python benchmarks/cls_accuracy_seeds.py --epochs 4 --train-samples 10000

CPU-scale evidence only (2 cores); see the README for what it does and does
not show.
"""
import argparse
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


def run(cmd, log):
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
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
    py = sys.executable
    start = time.time()
    run([py, 'tools/train.py', CONFIG, '--work-dir', work, '--cfg-options', *opts],
        osp.join(work, 'train.log'))
    train_s = time.time() - start
    best = glob.glob(osp.join(work, 'best_accuracy_top1_epoch_*.pth'))
    if len(best) != 1:
        raise SystemExit(f'expected one best checkpoint in {work}, got {best}')
    epoch = int(best[0].rsplit('_', 1)[1].split('.')[0])
    preds = osp.join(work, 'test_preds.pkl')
    run([py, 'tools/test.py', CONFIG, best[0], '--work-dir', osp.join(work, 'test'),
         '--out', preds, '--cfg-options', *opts], osp.join(work, 'test.log'))
    with open(preds, 'rb') as f:
        samples = pickle.load(f)
    scores = np.stack([np.asarray(s['pred_score']) for s in samples])
    labels = np.array([int(np.asarray(s['gt_label']).reshape(-1)[0]) for s in samples])
    acc = 100 * float((scores.argmax(1) == labels).mean())
    return dict(mode=mode, seed=seed, best_epoch=epoch, top1=acc,
                ece=ece(scores, labels), train_s=train_s, n_test=len(labels))


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
    args = parser.parse_args()

    results = []
    for seed in args.seeds:
        for mode in args.modes:
            res = one_run(args, mode, seed)
            print(json.dumps(res), flush=True)
            results.append(res)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(args=vars(args), runs=results), f, indent=1)

    names = dict(off='baseline', dsn='DSN', cds='CDS')
    print(f'\nFashion-MNIST test top-1 / ECE (%), {len(args.seeds)} seeds, '
          f'{args.epochs} epochs on {args.train_samples} train images; '
          'checkpoint picked on val')
    print('| method | test top-1 | test ECE | best epoch (val) | train time (s) |')
    print('|---|---|---|---|---|')
    for mode in args.modes:
        rows = [r for r in results if r['mode'] == mode]
        print(f'| {names.get(mode, mode)} | {fmt([r["top1"] for r in rows])} | '
              f'{fmt([r["ece"] for r in rows])} | '
              f'{",".join(str(r["best_epoch"]) for r in rows)} | '
              f'{fmt([r["train_s"] for r in rows])} |')


if __name__ == '__main__':
    main()
