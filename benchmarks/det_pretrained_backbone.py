"""The paper's detection route at CPU scale: a detector whose backbone was
pretrained as a classifier with CE or with CE + CDS, against one trained from
scratch; several seeds, one command, one table.

The chain, per seed ``k``:

1. pretrain the backbone as a Fashion-MNIST classifier twice, with CE
   (``model.mode=off``) and with CE + CDS (``cds``), same recipe, budget and
   seed ``k``: ``benchmarks/cls_accuracy_seeds.py`` on
   ``configs/demo/resnet18-w16_cds_1xb128_fashionmnist-56px.py`` (the
   converged protocol: 10,000 training images, 5,000 val, 15 epochs, the
   best-val checkpoint tested once on the 10,000 test images);
2. export each best-val checkpoint with ``tools/export_plain.py``
   (``backbone.pth``);
3. fine-tune the detector from each ``backbone.pth``
   (``init_cfg=dict(type='Pretrained', prefix='backbone.', ...)``) and once
   from scratch, seed ``k``, with no CDS term in the detector:
   ``benchmarks/det_accuracy_seeds.py`` on the Fashion-MNIST mosaic (its
   protocol: val bbox mAP every epoch, the best-val checkpoint tested once on
   a test set of another generator seed). Seed ``k`` of the pretraining feeds
   seed ``k`` of the detection, so the spread includes the pretraining.

The backbone is the detection demo's ResNet-18 at 1/4 width with the standard
stem, in both stages: the detector is the one the training-time studies use
(one scratch run serves both: it is recorded as the ``off`` run of
``benchmarks/results/det_mosaic_accuracy.json``), and its stem and four
stages work on classification images once Fashion-MNIST's 28 px items are
upsampled to 56 px (last stage 2x2), the middle of the 24-64 px items that
the mosaic detector sees. Caveat: this is in-domain pretraining (the mosaic's
objects are Fashion-MNIST items, its test items come from the t10k images the
classifiers never train on), the small-scale analogue of ImageNet -> COCO,
not a transfer to another domain.

    python benchmarks/det_pretrained_backbone.py \\
        --results benchmarks/results/det_pretrained_backbone.json

Rerunnable: a step recorded in ``--results`` with the same options is not
repeated, pretraining is done only for the detection runs still missing, and
every stage resumes a run cut short (see the two benchmarks it calls). The
results JSON (pretraining test top-1 per arm and seed; per detection run
mAP, mAP@50, best epoch, val curve, the commit and the stack's versions) is
rewritten after every step; progress and ETAs are printed. CPU-scale evidence
only.
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
sys.path.insert(0, REPO)  # cds_mm and benchmarks from this checkout

from benchmarks import cls_accuracy_seeds, det_accuracy_seeds  # noqa: E402
from benchmarks.common import git_commit, mean_std, run, say  # noqa: E402
from cds_mm.utils import atomic_write  # noqa: E402

PRETRAIN_CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist-56px.py'
# detector: (from-scratch config, from-a-backbone config)
DETECTORS = {
    'faster-rcnn':
    ('configs/demo/faster-rcnn_r18-w16_fpn_cds_fashion-mosaic.py',
     'configs/demo/faster-rcnn_r18-w16_fpn_cds-pretrained_fashion-mosaic.py'),
    'retinanet':
    ('configs/demo/retinanet_r18-w16_fpn_baseline_fashion-mosaic.py',
     'configs/demo/retinanet_r18-w16_fpn_cds-pretrained_fashion-mosaic.py'),
}
ARMS = {'ce': 'off', 'cds': 'cds'}  # pretraining arm: the classifier's mode
INITS = ('scratch', 'ce', 'cds')
MOSAIC_RESULTS = 'benchmarks/results/det_mosaic_accuracy.json'


def pretrain_argv(args, arm, seed):
    """``cls_accuracy_seeds.py`` arguments of one pretraining run."""
    return [
        '--config', PRETRAIN_CONFIG, '--modes', ARMS[arm], '--seeds',
        str(seed), '--epochs',
        str(args.pretrain_epochs), '--train-samples',
        str(args.train_samples), '--val-samples',
        str(args.val_samples), '--data-root', args.data_root, '--work-dir',
        osp.join(args.work_dir, 'pretrain'), '--results',
        osp.join(args.work_dir, 'pretrain', 'results.json')
    ]


def backbone_file(args, arm, seed):
    """Where the export of one pretraining run writes ``backbone.pth``."""
    return osp.join(
        det_accuracy_seeds.repo_path(args.work_dir), 'pretrain',
        f'{ARMS[arm]}_seed{seed}', 'export', 'backbone.pth')


def detect_argv(args, detector, init, seed):
    """``det_accuracy_seeds.py`` arguments of one detection run; the
    from-scratch Faster R-CNN is the multi-class study's baseline run."""
    scratch, pretrained = DETECTORS[detector]
    argv = [
        '--dataset', 'mosaic', '--variants', 'off', '--seeds',
        str(seed), '--data-root', args.data_root, '--data-dir', args.data_dir,
        '--work-dir',
        osp.join(args.work_dir, detector)
    ] + [
        f'--{k}={getattr(args, k.replace("-", "_"))}'
        for k in ('epochs', 'num-train', 'num-val', 'num-test')
    ]
    if init == 'scratch' and detector == 'faster-rcnn':
        return argv + ['--config', scratch, '--results', args.mosaic_results]
    argv += [
        '--ablation', f'init-{init}', '--results',
        osp.join(args.work_dir, detector, 'results.json')
    ]
    if init == 'scratch':
        return argv + ['--config', scratch]
    return argv + [
        '--config', pretrained, '--cfg-options',
        'model.detector.backbone.init_cfg.checkpoint=' +
        backbone_file(args, init, seed)
    ]


def detect_key(argv):
    """The options and config digest the detection run of ``argv`` trains
    with: a recorded run with both is done."""
    dargs = det_accuracy_seeds.parse_args(argv)
    opts = det_accuracy_seeds.run_opts(dargs, 'off', dargs.seeds[0])
    return opts, det_accuracy_seeds.config_digest(dargs.config, opts)


def pretrain(args, arm, seed, tag):
    """Train (or take) one pretraining run and export its backbone; its
    result row."""
    argv = pretrain_argv(args, arm, seed)
    res = cls_result(argv, arm, seed)
    if res is None or not osp.isfile(osp.join(REPO, res['checkpoint'])):
        # trained before, on a machine that no longer holds the checkpoint
        say(f'[{tag}] pretraining {arm} seed {seed}')
        cls_accuracy_seeds.main(argv + (['--retrain'] if res else []))
        res = cls_result(argv, arm, seed)
    ckpt = osp.join(REPO, res['checkpoint'])
    out = osp.join(REPO, backbone_file(args, arm, seed))
    if not osp.isfile(out) or osp.getmtime(out) < osp.getmtime(ckpt):
        run([
            sys.executable, 'tools/export_plain.py', PRETRAIN_CONFIG, ckpt,
            '--out-dir',
            osp.dirname(out)
        ], osp.join(osp.dirname(ckpt), 'export.log'))
    keep = ('seed', 'top1', 'ece', 'best_epoch', 'val_top1', 'train_s',
            'checkpoint', 'cfg_options', 'config_digest', 'git_commit',
            'versions')
    return dict(arm=arm, **{k: res.get(k) for k in keep})


def cls_result(argv, arm, seed):
    """The recorded pretraining run of ``argv``, or None."""
    cargs = cls_accuracy_seeds.parse_args(argv)
    if not osp.isfile(cargs.results):
        return None
    with open(cargs.results) as f:
        runs = json.load(f)['runs']
    return next((r for r in runs if r['mode'] == ARMS[arm]
                 and r['seed'] == seed and not r.get('variant')), None)


def detect(args, detector, init, seed, pre):
    """Train (or take) one detection run; its result row."""
    argv = detect_argv(args, detector, init, seed)
    det_accuracy_seeds.main(argv)
    dargs = det_accuracy_seeds.parse_args(argv)
    with open(dargs.results) as f:
        res = next(
            r for r in json.load(f)['runs']
            if r['seed'] == seed and r['variant'] == 'off'
            and r.get('ablation') == dargs.ablation and r['cfg_options'] ==
            det_accuracy_seeds.run_opts(dargs, 'off', seed))
    keep = ('mAP', 'mAP50', 'best_epoch', 'val_mAP', 'train_s', 'checkpoint',
            'cfg_options', 'config_digest', 'git_commit', 'versions',
            'taken_from')
    row = dict(detector=detector, init=init, seed=seed)
    row.update({k: res[k] for k in keep if k in res})
    if pre is not None:
        row['pretrain_top1'] = pre['top1']
    return row


def paired(runs, detector, a, b):
    """Per-seed ``a - b`` mAP differences of ``detector``'s runs."""
    by = {(r['init'], r['seed']): r['mAP']
          for r in runs if r['detector'] == detector}
    return {
        s: round(by[a, s] - by[b, s], 2)
        for (init, s) in sorted(by) if init == a and (b, s) in by
    }


def write_results(args, commit, pretrains, runs, jobs, earlier_missing=()):
    """The results JSON. It keeps what an earlier call recorded: its runs,
    and its missing runs not made since (``earlier_missing``), so that a call
    for one detector or seed does not hide another's gaps."""
    have = {(r['detector'], r['init'], r['seed']) for r in runs}
    wanted = dict.fromkeys([(m['detector'], m['init'], m['seed'])
                            for m in earlier_missing] + list(jobs))
    detectors = dict.fromkeys(
        list(args.detectors) + [r['detector'] for r in runs])
    out = dict(
        benchmark='benchmarks/det_pretrained_backbone.py',
        protocol='Backbone: ResNet-18 at 1/4 width, standard stem, '
        'pretrained on Fashion-MNIST at 56 px (' + PRETRAIN_CONFIG + '; '
        f'{args.train_samples} train / {args.val_samples} val images, '
        f'{args.pretrain_epochs} epochs, best-val checkpoint, CE or CE + '
        'CDS), exported with tools/export_plain.py; detector trained '
        'without CDS on the Fashion-MNIST mosaic (' +
        ', '.join(f'{d}: {c[0]} from scratch, {c[1]} from a backbone'
                  for d, c in DETECTORS.items()) +
        f'; {args.num_train} train / '
        f'{args.num_val} val / {args.num_test} test images, {args.epochs} '
        'epochs, best-val checkpoint tested once); seed k of the '
        'pretraining feeds seed k of the detection',
        git_commit=commit,
        date=datetime.date.today().isoformat(),
        args={
            k:
            det_accuracy_seeds.repo_path(v) if k in ('work_dir', 'results',
                                                     'mosaic_results') else v
            for k, v in vars(args).items()
        },
        pretrain=pretrains,
        runs=runs,
        paired={
            d: {
                'cds-ce': paired(runs, d, 'cds', 'ce'),
                'ce-scratch': paired(runs, d, 'ce', 'scratch'),
                'cds-scratch': paired(runs, d, 'cds', 'scratch')
            }
            for d in detectors
        },
        missing=[
            dict(detector=d, init=i, seed=s) for d, i, s in wanted
            if (d, i, s) not in have
        ])
    with atomic_write(args.results) as f:
        json.dump(out, f, indent=1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--data-root',
        default=det_accuracy_seeds.DEBIAN_ROOT,
        help='Fashion-MNIST IDX files')
    parser.add_argument(
        '--detectors',
        nargs='+',
        choices=list(DETECTORS),
        default=['faster-rcnn'])
    parser.add_argument(
        '--inits', nargs='+', choices=INITS, default=list(INITS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    mosaic = det_accuracy_seeds.DATASETS['mosaic']
    parser.add_argument(
        '--epochs', type=int, default=mosaic['epochs'], help='detection')
    for name in ('num_train', 'num_val', 'num_test'):
        parser.add_argument(
            '--' + name.replace('_', '-'),
            type=int,
            default=mosaic[name],
            help='mosaic images')
    parser.add_argument('--pretrain-epochs', type=int, default=15)
    parser.add_argument(
        '--train-samples',
        type=int,
        default=10000,
        help='Fashion-MNIST images for pretraining')
    parser.add_argument('--val-samples', type=int, default=5000)
    parser.add_argument(
        '--data-dir',
        default='data/fashion_mosaic',
        help='the mosaic (the test set goes to <data-dir>_test)')
    parser.add_argument('--work-dir', default='work_dirs/det_pretrained')
    parser.add_argument(
        '--mosaic-results',
        default=MOSAIC_RESULTS,
        help='where the from-scratch Faster R-CNN run is recorded: the '
        "multi-class study's results JSON, whose baseline run it is")
    parser.add_argument(
        '--results',
        default=None,
        help='results JSON (default: <work-dir>/results.json)')
    args = parser.parse_args(argv)
    for key in ('data_root', 'work_dir', 'mosaic_results'):
        setattr(args, key, osp.abspath(getattr(args, key)))
    args.results = osp.abspath(
        args.results or osp.join(args.work_dir, 'results.json'))
    return args


def main(argv=None):
    args = parse_args(argv)
    commit = git_commit()  # the code the runs start from
    os.makedirs(args.work_dir, exist_ok=True)
    jobs = [(d, i, s) for s in args.seeds for d in args.detectors
            for i in args.inits]
    pretrains, runs, earlier_missing = [], [], []
    if osp.isfile(args.results):
        with open(args.results) as f:
            old = json.load(f)
        pretrains, runs = old['pretrain'], old['runs']
        earlier_missing = old.get('missing', [])

    def recorded(d, i, s):
        opts, digest = detect_key(detect_argv(args, d, i, s))
        return any(
            r['detector'] == d and r['init'] == i and r['seed'] == s
            and r['cfg_options'] == opts and r['config_digest'] == digest
            for r in runs)

    todo = [job for job in jobs if not recorded(*job)]
    if not osp.isfile(args.results):  # a file that lists the missing runs
        write_results(args, commit, pretrains, runs, jobs, earlier_missing)
    durations = dict(pretrain=[], detect=[])
    steps = [('pretrain', arm, s) for s in args.seeds for arm in ARMS
             if any(j[1] == arm and j[2] == s for j in todo)]
    steps += [('detect', ) + job for job in todo]
    # seed by seed: the from-scratch run, the pretraining, the fine-tuning
    steps.sort(key=lambda st: (st[-1], 0 if st[0] == 'detect' and st[2] ==
                               'scratch' else 1 if st[0] == 'pretrain' else 2))
    say(f'{len(todo)}/{len(jobs)} detection runs and '
        f'{sum(st[0] == "pretrain" for st in steps)} pretraining runs to do')
    failures, began = [], time.time()
    for k, step in enumerate(steps):
        kind, seed = step[0], step[-1]
        tag = f'step {k + 1}/{len(steps)} {" ".join(map(str, step))}'
        left = steps[k:]
        guess = {
            kind: statistics.mean(v) if v else None
            for kind, v in durations.items()
        }
        known = [v for v in guess.values() if v]
        if known:
            eta = sum(guess[st[0]] or known[0] for st in left)
            say(f'[{tag}] ETA all steps {eta / 60:.0f} min')
        t = time.time()
        try:
            if kind == 'pretrain':
                row = pretrain(args, step[1], seed, tag)
                pretrains = [
                    p for p in pretrains
                    if (p['arm'], p['seed']) != (step[1], seed)
                ] + [row]
            else:
                pre = next((p for p in pretrains
                            if (p['arm'], p['seed']) == (step[2], seed)), None)
                row = detect(args, *step[1:], pre)
                runs = [
                    r for r in runs
                    if (r['detector'], r['init'], r['seed']) != step[1:]
                ] + [row]
                say(f'[{tag}] test mAP {row["mAP"]:.2f}, best val epoch '
                    f'{row["best_epoch"]}/{args.epochs}')
        except (SystemExit, Exception) as exc:  # the other seeds go on
            failures.append(f'{tag}: {exc}')
            say(f'[{tag}] FAILED: {exc}')
            continue
        durations[kind].append(time.time() - t)
        write_results(args, commit, pretrains, runs, jobs, earlier_missing)
    write_results(args, commit, pretrains, runs, jobs, earlier_missing)
    say(f'done in {time.time() - began:.0f} s; results in {args.results}')
    say('\n| detector | init | pretrain test top-1 | test mAP | test mAP@50 '
        '| per seed (mAP) | best epoch |')
    say('|---|---|---|---|---|---|---|')
    for d in args.detectors:
        for init in args.inits:
            rows = sorted(
                (r for r in runs if (r['detector'], r['init']) == (d, init)),
                key=lambda r: r['seed'])
            if not rows:
                continue
            top1 = [r['pretrain_top1'] for r in rows if 'pretrain_top1' in r]
            say(f'| {d} | {init} | {mean_std(top1) if top1 else "-"} | '
                f'{mean_std([r["mAP"] for r in rows])} | '
                f'{mean_std([r["mAP50"] for r in rows])} | ' +
                ', '.join(f'{r["seed"]}: {r["mAP"]:.2f}' for r in rows) +
                f' | {",".join(str(r["best_epoch"]) for r in rows)} |')
    if failures:
        raise SystemExit(f'{len(failures)} step(s) failed:\n' +
                         '\n'.join(failures))


if __name__ == '__main__':
    main()
