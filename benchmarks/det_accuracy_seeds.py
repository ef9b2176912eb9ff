"""Baseline vs image-level CDS vs image + instance CDS bbox mAP, several seeds;
prints one table.

Every method trains the demo's tiny Faster R-CNN (ResNet-18 at 1/4 width, FPN
32 channels) on the same Fashion-MNIST mosaic images (real objects, 10
classes), epochs and seeds; only ``model.mode`` / ``model.instance_head``
differ. The mosaic is built with ``num_train + num_val`` images from the
training IDX files, split by image id into train and val; the mosaic's own val
set (items from t10k) is the test split. The checkpoint with the best val bbox
mAP is tested once on the test split. Runs go through ``tools/train.py`` /
``tools/test.py`` in subprocesses, so the numbers are what a user gets from the
CLI.

    python benchmarks/det_accuracy_seeds.py --epochs 6 --num-train 1500
    --num-val 250

CPU-scale evidence only (2 cores); see the README for what it does and does not
show.
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/demo/faster-rcnn_r18-w16_fpn_cds_fashion-mosaic.py'
DEBIAN_ROOT = '/usr/share/datasets/fashion-mnist'  # dataset-fashion-mnist
VARIANTS = {
    'off': ('baseline', ['model.mode=off']),
    'img': ('CDS image-level', ['model.instance_head=None']),
    'img+ins': ('CDS image + instance', [])
}
SPLIT_ANNS = ('annotations/instances_train-split.json',
              'annotations/instances_val-split.json')
TEST_ANN = 'annotations/instances_val.json'


def build_data(args):
    """Build (or reuse) the mosaic and split its train side by image id into
    train / val."""
    sys.path.insert(0, REPO)
    from cds_mm.datasets import make_fashion_mosaic_coco
    paths = make_fashion_mosaic_coco(
        args.data_root,
        args.data_dir,
        num_train=args.num_train + args.num_val,
        num_val=args.num_test)
    with open(paths['train_ann']) as f:
        coco = json.load(f)
    keeps = (lambda i: i <= args.num_train, lambda i: i > args.num_train)
    for ann_file, keep in zip(SPLIT_ANNS, keeps):
        images = [im for im in coco['images'] if keep(im['id'])]
        ids = {im['id'] for im in images}
        part = dict(
            coco,
            images=images,
            annotations=[
                a for a in coco['annotations'] if a['image_id'] in ids
            ])
        with open(osp.join(args.data_dir, ann_file), 'w') as f:
            json.dump(part, f, separators=(',', ':'))


def run(cmd, log):
    with open(log, 'w') as f:
        proc = subprocess.run(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(
            f'failed ({proc.returncode}): {" ".join(cmd)}; see {log}')


def data_options(args):
    root = args.data_dir.rstrip('/') + '/'
    opts = []
    for split, ann, img in (('train', SPLIT_ANNS[0],
                             'train/'), ('val', SPLIT_ANNS[1], 'train/'),
                            ('test', TEST_ANN, 'val/')):
        opts += [
            f'{split}_dataloader.dataset.data_root={root}',
            f'{split}_dataloader.dataset.ann_file={ann}',
            f'{split}_dataloader.dataset.data_prefix.img={img}'
        ]
        if split != 'train':
            opts.append(f'{split}_evaluator.ann_file={root}{ann}')
    return opts


def test_metrics(test_dir):
    """``coco/bbox_mAP*`` of the test run, from the json log ``tools/test.py``
    wrote.

    CocoMetric logs nothing when the model detects nothing at all: that is an
    mAP of 0.
    """
    logs = sorted(glob.glob(osp.join(test_dir, '*', '*.json')))
    if not logs:
        raise SystemExit(f'no json log under {test_dir}')
    for path in logs:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'coco/bbox_mAP' in rec:
                    return rec
    return {'coco/bbox_mAP': 0.0, 'coco/bbox_mAP_50': 0.0}


def one_run(args, variant, seed):
    work = osp.join(args.work_dir, f'{variant}_seed{seed}')
    os.makedirs(work, exist_ok=True)
    # the demo's 12-epoch steps [9, 11], scaled to --epochs
    steps = sorted({max(1, round(args.epochs * f / 12)) for f in (9, 11)})
    opts = VARIANTS[variant][1] + data_options(args) + [
        f'randomness.seed={seed}', f'train_cfg.max_epochs={args.epochs}',
        'train_cfg.val_interval=1',
        f'param_scheduler.1.milestones=[{",".join(map(str, steps))}]',
        f'default_hooks.checkpoint.interval={args.epochs}',
        'default_hooks.checkpoint.max_keep_ckpts=1',
        'default_hooks.checkpoint.save_best=coco/bbox_mAP',
        'default_hooks.checkpoint.rule=greater'
    ]
    py = sys.executable
    start = time.time()
    run([
        py, 'tools/train.py', CONFIG, '--work-dir', work, '--cfg-options',
        *opts
    ], osp.join(work, 'train.log'))
    train_s = time.time() - start
    best = glob.glob(osp.join(work, 'best_coco_bbox_mAP_epoch_*.pth'))
    if len(best) > 1:
        raise SystemExit(f'expected one best checkpoint in {work}, got {best}')
    if best:
        ckpt, epoch = best[0], int(best[0].rsplit('_', 1)[1].split('.')[0])
    # no detection on val in any epoch, so CocoMetric logged no mAP: take the
    # last
    else:
        ckpt, epoch = osp.join(work, f'epoch_{args.epochs}.pth'), None
    test_dir = osp.join(work, 'test')
    run([
        py, 'tools/test.py', CONFIG, ckpt, '--work-dir', test_dir,
        '--cfg-options', *opts
    ], osp.join(work, 'test.log'))
    rec = test_metrics(test_dir)
    return dict(
        variant=variant,
        seed=seed,
        best_epoch=epoch,
        mAP=100 * rec['coco/bbox_mAP'],
        mAP50=100 * rec['coco/bbox_mAP_50'],
        train_s=train_s)


def fmt(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{mean:.2f} ± {std:.2f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--data-root', default=DEBIAN_ROOT, help='Fashion-MNIST IDX files')
    parser.add_argument(
        '--data-dir', default='data/fashion_mosaic', help='mosaic output')
    parser.add_argument('--epochs', type=int, default=6)
    parser.add_argument('--num-train', type=int, default=1500)
    parser.add_argument('--num-val', type=int, default=250)
    parser.add_argument('--num-test', type=int, default=1000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--variants',
        nargs='+',
        default=list(VARIANTS),
        choices=list(VARIANTS))
    parser.add_argument('--work-dir', default='work_dirs/bench_det_accuracy')
    args = parser.parse_args()
    if args.num_train < 1 or args.num_val < 1 or args.num_test < 1:
        raise SystemExit('--num-train, --num-val and --num-test must be >= 1')
    # the runs' working directory is the repo: make the paths independent of it
    for key in ('data_root', 'data_dir', 'work_dir'):
        setattr(args, key, osp.abspath(getattr(args, key)))

    start = time.time()
    build_data(args)
    results = []
    for seed in args.seeds:
        for variant in args.variants:
            res = one_run(args, variant, seed)
            print(json.dumps(res), flush=True)
            results.append(res)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(args=vars(args), runs=results), f, indent=1)

    print(
        f'\nFashion-MNIST mosaic test bbox mAP (%), {len(args.seeds)} seeds, '
        f'{args.epochs} '
        f'epochs on {args.num_train} train images, checkpoint picked on '
        f'{args.num_val} val '
        f'images, tested on {args.num_test}; wall time '
        f'{time.time() - start:.0f} s')
    print('| method | test mAP | test mAP@50 | per seed (mAP) | best epoch '
          '(val) | '
          'train time (s) |')
    print('|---|---|---|---|---|---|')
    for variant in args.variants:
        rows = [r for r in results if r['variant'] == variant]
        per_seed = ', '.join(f'{r["seed"]}: {r["mAP"]:.2f}' for r in rows)
        print(f'| {VARIANTS[variant][0]} | {fmt([r["mAP"] for r in rows])} | '
              f'{fmt([r["mAP50"] for r in rows])} | '
              f'{per_seed} | '
              f'{",".join(str(r["best_epoch"] or "last") for r in rows)} | '
              f'{fmt([r["train_s"] for r in rows])} |')


if __name__ == '__main__':
    main()
