"""Semi-supervised CDS vs supervised-only, and distilled CDS vs plain KD,
several seeds; prints tables.

The student and data are the classification benchmark's
(``cls_accuracy_seeds.py``): ResNet-18 (CIFAR stem, 1/4 width) on a fixed
Fashion-MNIST subset, two views, batch 128, the checkpoint with the best val
accuracy tested once on the test split. Runs go through ``tools/train.py`` /
``tools/test.py`` in subprocesses.

Semi-supervised (``--semi-variants``), config
``resnet18-w16_semi-cds-20p_fashionmnist.py``: 20 % of the training subset
keeps its labels (split file made once by
``tools/dataset_converters/make_semi_split.py``, split seed 0 for every run);
each batch holds 32 labelled + 96 unlabelled images, for the same number of
iterations in every variant:

- ``sup``: ``model.mode=off``, CE on the labelled images only
  (supervised-only);
- ``sup-cds``: CDS on the labelled images, the unlabelled ones unused
  (``unlabelled_weight=0``);
- ``semi``: CDS on the labelled images + SimCLR on the unlabelled ones.

Distillation (``--kd-variants``): one ResNet-50 (1/4 width) CDS teacher is
    trained (seed 0) on the
same subset and exported with ``tools/export_plain.py``; the student config
``resnet18-w16_distilled-cds_r50-w16_fashionmnist.py`` then trains with

- ``none``: the plain student (classification benchmark config,
  ``model.mode=off``), no teacher;
- ``cds``: the CDS student without a teacher (classification benchmark config);
- ``kd``: plain KD (``model.mode=off``: CE + logit KD);
- ``cds+kd``: distilled CDS (CE + CDS + logit KD + head-to-head embedding
  matching).

    python benchmarks/semi_kd_accuracy_seeds.py --epochs 4 --train-samples 6000
    \\
        --val-samples 2000 --workers 1

CPU-scale evidence only (2 cores). results.json is rewritten after every
finished run; a run whose test predictions exist is not repeated, so the same
command resumes an interrupted one.
"""
import argparse
import glob
import json
import os
import os.path as osp
import pickle
import sys
import time

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmarks.cls_accuracy_seeds import DEBIAN_ROOT, REPO, ece, schedule_opts
from benchmarks.common import mean_std, run

CLS_CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
SEMI_CONFIG = 'configs/demo/resnet18-w16_semi-cds-20p_fashionmnist.py'
TEACHER_CONFIG = 'configs/demo/resnet50-w16_cds_1xb128_fashionmnist.py'
KD_CONFIG = 'configs/demo/resnet18-w16_distilled-cds_r50-w16_fashionmnist.py'
SEMI_VARIANTS = {
    'sup': ('supervised-only (CE on the 20 %)', ['model.mode=off']),
    'sup-cds':
    ('CDS on the 20 %, unlabelled unused', ['model.unlabelled_weight=0.0']),
    'semi': ('semi-supervised CDS (+ SimCLR on the 80 %)', [])
}
KD_VARIANTS = {
    'none': ('no KD, plain student', CLS_CONFIG, ['model.mode=off']),
    'cds': ('no KD, CDS student', CLS_CONFIG, []),
    'kd': ('plain KD (logits)', KD_CONFIG, ['model.mode=off']),
    'cds+kd': ('distilled CDS (CDS + KD + head matching)', KD_CONFIG, [])
}


def data_opts(args, split_key=None):
    """Data root, subset sizes and loader workers of every split."""
    opts = [f'val_dataloader.dataset.max_samples={args.val_samples}']
    train_ds = split_key or 'train_dataloader.dataset'
    opts += [
        f'{train_ds}.max_samples={args.train_samples}',
        f'{train_ds}.data_root={args.data_root}'
    ]
    for split in ('val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={args.data_root}')
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.num_workers={args.workers}')
        # torch refuses persistent workers without workers
        if args.workers == 0:
            opts.append(f'{split}_dataloader.persistent_workers=False')
    return opts


def epoch_opts(args):
    return schedule_opts(args.epochs)  # the classification config's one cycle


def train_test(args, name, config, opts, by='epoch'):
    """Train, test the best-val checkpoint once; top-1, ECE and the training
    time.

    A run whose test predictions exist is not repeated (an interrupted
    benchmark resumes); its training time is then unknown (None).
    """
    work = osp.join(args.work_dir, name)
    os.makedirs(work, exist_ok=True)
    preds = osp.join(work, 'test_preds.pkl')
    py, start, train_s = sys.executable, time.time(), None
    if not osp.isfile(preds):
        run([
            py, 'tools/train.py', config, '--work-dir', work, '--cfg-options',
            *opts
        ], osp.join(work, 'train.log'))
        train_s = time.time() - start
    best = glob.glob(osp.join(work, f'best_accuracy_top1_{by}_*.pth'))
    if len(best) != 1:
        raise SystemExit(f'expected one best checkpoint in {work}, got {best}')
    if train_s is not None:
        run([
            py, 'tools/test.py', config, best[0], '--work-dir',
            osp.join(work, 'test'), '--out', preds, '--cfg-options', *opts
        ], osp.join(work, 'test.log'))
    with open(preds, 'rb') as f:
        samples = pickle.load(f)
    scores = np.stack([np.asarray(s['pred_score']) for s in samples])
    labels = np.array(
        [int(np.asarray(s['gt_label']).reshape(-1)[0]) for s in samples])
    return dict(
        best=int(best[0].rsplit('_', 1)[1].split('.')[0]),
        top1=100 * float((scores.argmax(1) == labels).mean()),
        ece=ece(scores, labels),
        train_s=train_s,
        checkpoint=best[0])


def semi_runs(args, record):
    split_file = osp.join(args.work_dir,
                          f'split_{args.train_samples}_20p_seed0.json')
    base = data_opts(args, 'train_dataloader.dataset.dataset') + [
        f'train_dataloader.dataset.split_file={split_file}'
    ]
    run([
        sys.executable, 'tools/dataset_converters/make_semi_split.py',
        SEMI_CONFIG, '--cfg-options', *base
    ], osp.join(args.work_dir, 'make_semi_split.log'))
    # the classification benchmark's number of steps: epochs over the whole
    # subset
    iters = args.epochs * -(-args.train_samples // 128)
    sched = [
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters // args.epochs}',
        f'param_scheduler.T_max={iters}',
        f'default_hooks.checkpoint.interval={iters // args.epochs}'
    ]
    for seed in args.seeds:
        for variant in args.semi_variants:
            opts = base + sched + SEMI_VARIANTS[variant][1] + [
                f'randomness.seed={seed}'
            ]
            res = train_test(
                args,
                f'semi_{variant}_seed{seed}',
                SEMI_CONFIG,
                opts,
                by='iter')
            record(dict(part='semi', variant=variant, seed=seed, **res))


def kd_runs(args, record):
    teacher_dir = osp.join(args.work_dir, 'teacher_r50_seed0')
    export_dir = osp.join(teacher_dir, 'export')
    needs_teacher = any(KD_VARIANTS[v][1] == KD_CONFIG
                        for v in args.kd_variants)
    if needs_teacher and not osp.isfile(osp.join(export_dir, 'heads.pth')):
        res = train_test(
            args, 'teacher_r50_seed0', TEACHER_CONFIG,
            data_opts(args) + epoch_opts(args) + ['randomness.seed=0'])
        run([
            sys.executable, 'tools/export_plain.py', TEACHER_CONFIG,
            res['checkpoint'], '--out-dir', export_dir
        ], osp.join(teacher_dir, 'export.log'))
        record(dict(part='teacher', variant='r50-cds', seed=0, **res))
    teacher = [
        f'model.teacher_ckpt={export_dir}/plain.pth',
        f'model.teacher_heads_ckpt={export_dir}/heads.pth'
    ]
    for seed in args.seeds:
        for variant in args.kd_variants:
            _, config, extra = KD_VARIANTS[variant]
            opts = data_opts(args) + epoch_opts(args) + extra + [
                f'randomness.seed={seed}'
            ]
            if config == KD_CONFIG:
                opts += teacher
            res = train_test(args, f'kd_{variant}_seed{seed}', config, opts)
            record(dict(part='kd', variant=variant, seed=seed, **res))


def print_tables(args, results):
    print(
        f'\nFashion-MNIST test top-1 / ECE (%), seeds {args.seeds}, '
        f'{args.epochs} epochs '
        f'of steps on {args.train_samples} train images; checkpoint picked on '
        'val')
    tables = [('semi', SEMI_VARIANTS, args.semi_variants),
              ('kd', KD_VARIANTS, args.kd_variants)]
    for part, variants, chosen in tables:
        rows = [
            (v,
             [r for r in results if r['part'] == part and r['variant'] == v])
            for v in chosen
        ]
        if not any(r for _, r in rows):
            continue
        print(f'\n| {part}: method | test top-1 | test ECE | top-1 per seed |')
        print('|---|---|---|---|')
        for v, rs in rows:
            if rs:
                per_seed = ', '.join(f'{r["top1"]:.2f}' for r in rs)
                print(f'| {variants[v][0]} | '
                      f'{mean_std([r["top1"] for r in rs])} | '
                      f'{mean_std([r["ece"] for r in rs])} | {per_seed} |')
    for r in results:
        if r['part'] == 'teacher':
            print('\nteacher (ResNet-50 1/4 width, CDS, seed 0): top-1 '
                  f'{r["top1"]:.2f}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', default=DEBIAN_ROOT)
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--train-samples', type=int, default=6000)
    parser.add_argument('--val-samples', type=int, default=2000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--semi-variants',
        nargs='*',
        default=['sup', 'semi'],
        choices=list(SEMI_VARIANTS))
    parser.add_argument(
        '--kd-variants',
        nargs='*',
        default=list(KD_VARIANTS),
        choices=list(KD_VARIANTS))
    parser.add_argument(
        '--workers', type=int, default=1, help='data loader workers per run')
    parser.add_argument('--work-dir', default='work_dirs/bench_semi_kd')
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    os.chdir(REPO)

    results = []

    def record(res):
        results.append(res)
        print(json.dumps(res), flush=True)
        from cds_mm.utils import atomic_write
        with atomic_write(osp.join(args.work_dir, 'results.json')) as f:
            json.dump(dict(args=vars(args), runs=results), f, indent=1)

    start = time.time()
    if args.semi_variants:
        semi_runs(args, record)
    if args.kd_variants:
        kd_runs(args, record)
    print(f'{len(results)} runs in {time.time() - start:.0f} s', flush=True)
    print_tables(args, results)


if __name__ == '__main__':
    main()
