"""Baseline vs CDS bbox mAP (image-level, instance-level, both heads or
proposal-level), several seeds; prints one table.

Every method trains the demo's tiny Faster R-CNN (ResNet-18 at 1/4 width, FPN
32 channels) on the same images, epochs and seeds; only ``model.mode`` /
``model.cds_head`` / ``model.instance_head`` differ (``--variants``: ``off``,
``img``, ``ins``, ``img+ins``, ``proposal``: FSCE's contrast of the RoI head's
proposals, two-stage detectors only; by default those of the config's heads:
the mosaic config has both, the dense one the instance head alone). Two data
sets (``--dataset``):

* ``mosaic`` (default): the Fashion-MNIST mosaic (real objects, 10 classes).
  It is built with ``num_train + num_val`` images from the training IDX files,
  split by image id into train and val; the test split is the val split
  (items from t10k) of another generator seed (1) in ``<data-dir>_test``.
  24 epochs with lr x0.1 at epoch 16 (scaled to ``--epochs``).
* ``dense``: the generated dense one-class set (15-30 small, partly occluded
  blobs per 320 px image; ``cds_mm.datasets.make_dense_coco``). Train and val
  are the train and val splits of generator seed 0 in ``--data-dir``; the test
  split is the val split of generator seed 1 in ``<data-dir>_test``. 24 epochs
  with the config's own step at epoch 20 (scaled to ``--epochs``).

Val bbox mAP is computed every epoch; the checkpoint with the best one is
tested once on the test split. Runs go through ``tools/train.py`` /
``tools/test.py`` in subprocesses, so the numbers are what a user gets from the
CLI. The 3-seed dense study:

    python benchmarks/det_accuracy_seeds.py --dataset dense --epochs 24 \\
        --work-dir work_dirs/probe_e24 \\
        --results benchmarks/results/det_dense_accuracy_24ep.json

and the multi-class one on the mosaic, each CDS variant at the weight that
its seed-0 screen (``--ablation`` runs, one per weight) measured best on val:

    python benchmarks/det_accuracy_seeds.py \\
        --variants off img ins img+ins proposal \\
        --weights-from benchmarks/results/det_mosaic_weight_screen.json \\
        --results benchmarks/results/det_mosaic_accuracy.json

The screen's chosen runs are the study's seed-0 runs (the same config: taken,
not trained again, as below); the choice is recorded (``weight_choice``).

Resumable: a run whose ``result.json`` exists with the same options and
config (digest of the merged config), or which the ``--results`` file already
holds so, is not repeated; a run of the same config under another name (e.g.
an ablation whose option has since become the config's default) in a results
JSON beside ``--results`` is taken, with ``taken_from`` naming it; a run
cut short resumes from its last epoch. The results JSON (protocol, git
commit, per-seed numbers, per-epoch val bbox mAP) is rewritten after every
finished run; progress (run k of N, epoch, val mAP, ETA) is printed while a
run trains. ``--cfg-options`` adds config overrides to every run, e.g.
``--cfg-options optim_wrapper.clip_grad.max_norm=10``; an ablation names
itself with ``--ablation``, so that several share one results file (a run is
keyed by ablation, variant and seed; the file keeps the runs this call does
not make)::

    python benchmarks/det_accuracy_seeds.py --dataset dense --epochs 24 \\
        --variants ins --seeds 0 --ablation w0.02 \\
        --cfg-options model.instance_head.loss_weight=0.02 \\
        --results benchmarks/results/det_dense_ablations_24ep.json

CPU-scale evidence only (2 cores); see benchmarks/README.md for what it does
and does not show.
"""
import argparse
import datetime
import functools
import glob
import json
import os
import os.path as osp
import re
import shutil
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # cds_mm from this checkout

from benchmarks.common import (best_checkpoint, config_digest, earlier_result,
                               git_commit, mean_std, other_runs, recorded_runs,
                               run, say, stack_versions, take_twin, twin_run,
                               watch_training)
from cds_mm.utils import atomic_write

DEBIAN_ROOT = '/usr/share/datasets/fashion-mnist'  # dataset-fashion-mnist
MODEL = ('the demo\'s tiny Faster R-CNN (ResNet-18 at 1/4 width, FPN 32 '
         'channels)')
DATASETS = {
    'mosaic':
    dict(
        name='Fashion-MNIST mosaic',
        config='configs/demo/faster-rcnn_r18-w16_fpn_cds_fashion-mosaic.py',
        data_dir='data/fashion_mosaic',
        epochs=24,
        num_train=800,
        num_val=200,
        num_test=1000,
        steps=(8, ),  # the config's step at epoch 16 of 24, scaled
        ckpt_interval=1,  # every epoch (one kept), so a run can resume
        protocol=MODEL + ', 128 px mosaics of 1-4 Fashion-MNIST items of '
        '24-64 px (10 classes); {num_train} train and {num_val} val images '
        '(training IDX files, generator seed 0, split by image id), '
        '{num_test} test images (t10k items, generator seed 1); batch 8, '
        'AdamW lr 1e-3, 50-iteration warm-up, {epochs} epochs, lr x0.1 at '
        'epochs {milestones}; val bbox mAP every epoch, the best-val '
        'checkpoint tested once; config {config}'),
    'dense':
    dict(
        name='dense one-class set',
        config='configs/demo/faster-rcnn_r18-w16_fpn_cds_dense.py',
        data_dir='data/dense',
        epochs=24,
        num_train=200,
        num_val=50,
        num_test=200,
        # the config's step at epoch 20 of 24, scaled to --epochs
        steps=(10, ),
        ckpt_interval=1,  # every epoch (one kept), so a run can resume
        protocol=MODEL + ' on the generated dense one-class set (15-30 '
        'partly occluded blobs of 15-34 px per 320 px image over '
        'unannotated clutter); {num_train} train and {num_val} val images '
        '(generator seed 0), {num_test} test images (generator seed 1); '
        'batch 4, AdamW lr 1e-3, 50-iteration warm-up, {epochs} epochs, lr '
        'x0.1 at epochs {milestones}; val bbox mAP every epoch, the best-val '
        'checkpoint tested once; config {config}'),
}
# name: (label, options, the config's heads it needs)
VARIANTS = {
    'off': ('baseline', ['model.mode=off'], ()),
    'img': ('CDS image-level', ['model.instance_head=None'], ('cds_head', )),
    'ins':
    ('CDS instance-level', ['model.cds_head=None'], ('instance_head', )),
    'img+ins': ('CDS image + instance', [], ('cds_head', 'instance_head')),
    # FSCE's contrastive proposal encoding (its defaults: weight 0.5, T 0.2,
    # IoU >= 0.8 anchors), the image- and instance-level heads off
    'proposal': ('CDS proposal-level', [
        'model.cds_head=None', 'model.instance_head=None',
        'model.proposal_head.type=ProposalCDSHead'
    ], ())
}
SPLIT_ANNS = ('annotations/instances_train-split.json',
              'annotations/instances_val-split.json')
TEST_ANN = 'annotations/instances_val.json'
VAL_RE = re.compile(r'Epoch\(val\)\s+\[(\d+)\]\[\s*\d+/\d+\]\s+'
                    r'coco/bbox_mAP:\s*(-?[\d.]+)')


def here(path):
    """``path`` as this process reaches it (the runs' cwd is the repo)."""
    return osp.join(REPO, path)


def repo_path(path):
    """``path`` relative to the repo when inside it, else absolute."""
    path = osp.abspath(path)
    rel = osp.relpath(path, REPO)
    return path if rel == '..' or rel.startswith('..' + os.sep) else rel


def test_data_dir(args):
    """The test set's folder: a sibling of ``--data-dir``."""
    return args.data_dir.rstrip('/') + '_test'


def build_data(args):
    """Build (or reuse) the data set of ``args.dataset``."""
    if args.dataset == 'dense':
        from cds_mm.datasets import make_dense_coco
        make_dense_coco(
            here(args.data_dir), args.num_train, args.num_val, seed=0)
        # another generator seed: its val split is the test split
        make_dense_coco(here(test_data_dir(args)), 0, args.num_test, seed=1)
        return
    # the mosaic, its train side split by image id into train / val; the
    # test split: t10k items drawn by another generator seed
    from cds_mm.datasets import make_fashion_mosaic_coco
    paths = make_fashion_mosaic_coco(
        args.data_root,
        here(args.data_dir),
        num_train=args.num_train + args.num_val,
        num_val=1)
    make_fashion_mosaic_coco(
        args.data_root,
        here(test_data_dir(args)),
        num_train=1,
        num_val=args.num_test,
        seed=1)
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
        with open(osp.join(here(args.data_dir), ann_file), 'w') as f:
            json.dump(part, f, separators=(',', ':'))


def data_options(args):
    """Data roots, annotation files, image folders and evaluators of the
    train / val / test splits."""
    root = args.data_dir.rstrip('/') + '/'
    roots = (root, root, test_data_dir(args) + '/')
    if args.dataset == 'dense':
        anns = ('annotations/instances_train.json', TEST_ANN, TEST_ANN)
        imgs = ('train/', 'val/', 'val/')
    else:
        anns = (*SPLIT_ANNS, TEST_ANN)
        imgs = ('train/', 'train/', 'val/')
    opts = []
    for split, data_root, ann, img in zip(('train', 'val', 'test'), roots,
                                          anns, imgs):
        opts += [
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_dataloader.dataset.ann_file={ann}',
            f'{split}_dataloader.dataset.data_prefix.img={img}'
        ]
        if split != 'train':
            opts.append(f'{split}_evaluator.ann_file={data_root}{ann}')
    return opts


def milestones(args):
    """The dataset's lr steps (given for 12 epochs), scaled to
    ``args.epochs``."""
    return sorted({
        max(1, round(args.epochs * f / 12))
        for f in DATASETS[args.dataset]['steps']
    })


@functools.lru_cache()
def config_heads(config):
    """The CDS heads ``config`` sets (of ``cds_head`` and ``instance_head``)
    and the variant that is ``config`` as it is."""
    from mmengine.config import Config
    model = Config.fromfile(here(config), import_custom_modules=False).model
    heads = tuple(k for k in ('cds_head', 'instance_head') if model.get(k))
    return heads, next(v for v, spec in VARIANTS.items() if spec[2] == heads)


def run_opts(args, variant, seed):
    """The ``--cfg-options`` of one run (also what its result records)."""
    interval = DATASETS[args.dataset]['ckpt_interval'] or args.epochs
    steps = ','.join(map(str, milestones(args)))
    return VARIANTS[variant][1] + data_options(args) + [
        f'randomness.seed={seed}', f'train_cfg.max_epochs={args.epochs}',
        'train_cfg.val_interval=1', f'param_scheduler.1.milestones=[{steps}]',
        f'default_hooks.checkpoint.interval={interval}',
        'default_hooks.checkpoint.max_keep_ckpts=1',
        'default_hooks.checkpoint.save_best=coco/bbox_mAP',
        'default_hooks.checkpoint.rule=greater'
    ] + args.weight_choice.get(variant, {}).get('options', []) + list(
        args.cfg_options)


def screen_choice(screen, variants):
    """Per CDS variant of ``variants``, the run of the weight screen
    ``screen`` (a results file of ``--ablation`` runs) with the best val bbox
    mAP (the maximum of its curve; ties go to the run recorded first):
    ``{variant: dict(ablation=, seed=, screen=, options=, val_mAP=)}``.

    Raises:
        SystemExit: ``screen`` holds no run of one of ``variants``.
    """
    with open(screen) as f:
        runs = [r for r in json.load(f)['runs'] if r.get('ablation')]
    choice = {}
    for variant in variants:
        if variant == 'off':
            continue
        rows = [r for r in runs if r['variant'] == variant]
        if not rows:
            raise SystemExit(f'--weights-from {screen} has no run of variant '
                             f"'{variant}'; screen it first (--ablation)")
        best = max(rows, key=lambda r: max(p['mAP'] for p in r['val_mAP']))
        choice[variant] = dict(
            ablation=best['ablation'],
            seed=best['seed'],
            screen=repo_path(screen),
            options=best.get('ablation_options', []),
            val_mAP=max(p['mAP'] for p in best['val_mAP']))
    return choice


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


def val_curve(work):
    """Val bbox mAP (%) per epoch from mmengine's scalars; a resumed run has
    several timestamped folders, later ones win. An epoch without detections
    has no entry (CocoMetric logs nothing then)."""
    val = {}
    for path in sorted(
            glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'coco/bbox_mAP' in rec:
                    val[int(rec['step'])] = round(100 * rec['coco/bbox_mAP'],
                                                  2)
    return [dict(epoch=e, mAP=val[e]) for e in sorted(val)]


def train_with_progress(cmd, log, tag, epochs, state):
    """Run the training subprocess; print its epoch, last val mAP and the
    ETAs."""

    began = time.time()

    def report(line, val, left):
        if val:
            line += f', val mAP {100 * float(val[1]):.1f} (epoch {val[0]})'
        # before a run has finished, the queued ones take as long as this
        per_run = statistics.mean(state['durations']) \
            if state['durations'] else time.time() - began + left
        say(f'[{tag}] {line}; ETA this run {left / 60:.0f} min, all '
            f'{(left + state["queued"] * per_run) / 60:.0f} min')

    watch_training(cmd, log, epochs, VAL_RE, report)


def run_key(res):
    return res.get('ablation'), res['variant'], res['seed']


def work_dir(args, variant, seed):
    """The work dir of one run: ``[<ablation>_]<variant>_seed<seed>``."""
    name = f'{variant}_seed{seed}'
    return osp.join(args.work_dir,
                    f'{args.ablation}_{name}' if args.ablation else name)


def run_result(args, variant, seed, recorded):
    """This run's earlier result with the same options, or None."""
    opts = run_opts(args, variant, seed)
    return earlier_result(
        recorded.get((args.ablation, variant, seed)),
        osp.join(work_dir(args, variant, seed), 'result.json'), opts,
        config_digest(args.config, opts))


def one_run(args, variant, seed, tag, state):
    """Train, test the best-val checkpoint once; the run's result dict."""
    work = work_dir(args, variant, seed)
    opts = run_opts(args, variant, seed)
    res = run_result(args, variant, seed, state['recorded'])
    if res is not None:
        say(f'[{tag}] finished before with the same options, not repeated')
        return res
    os.makedirs(work, exist_ok=True)
    config = args.config
    twin = twin_run(config_digest(config, opts), args.results, args.work_dir)
    if twin is not None:
        return take_twin(
            twin,
            osp.join(work, 'result.json'),
            tag, ('ablation', 'ablation_options', 'note'),
            **ablation_fields(args),
            variant=variant,
            seed=seed,
            cfg_options=opts)
    # a cut-short run resumes only with its own options
    opts_file = osp.join(work, 'run_options.json')
    resume = osp.isfile(osp.join(work, 'last_checkpoint'))
    if resume and osp.isfile(opts_file):
        with open(opts_file) as f:
            if json.load(f) != opts:
                raise SystemExit(f'{work} holds a run with other options; use '
                                 'another --work-dir or delete it')
    with atomic_write(opts_file) as f:
        json.dump(opts, f, indent=1)
    if not resume:  # a best checkpoint of a run cut short would stay
        for path in glob.glob(osp.join(work, 'best_*.pth')):
            os.remove(path)
    # the code the run trains with, read before it starts
    py, start, commit = sys.executable, time.time(), git_commit()
    say(f'[{tag}] training{" (resumed)" if resume else ""} in {work}')
    train_with_progress([
        py, 'tools/train.py', config, '--work-dir', work,
        *(['--resume'] if resume else []), '--cfg-options', *opts
    ], osp.join(work, 'train.log'), tag, args.epochs, state)
    train_s = time.time() - start
    curve = {p['epoch']: p['mAP'] for p in val_curve(work)}
    ckpt, epoch = best_checkpoint(work, 'coco_bbox_mAP', curve)
    if ckpt is None:  # no detection on val in any epoch: no mAP was logged
        ckpt = osp.join(work, f'epoch_{args.epochs}.pth')
    test_dir = osp.join(work, 'test')
    shutil.rmtree(test_dir, ignore_errors=True)  # no stale test logs
    run([
        py, 'tools/test.py', config, ckpt, '--work-dir', test_dir,
        '--cfg-options', *opts
    ], osp.join(work, 'test.log'))
    rec = test_metrics(test_dir)
    res = dict(
        **ablation_fields(args),
        variant=variant,
        seed=seed,
        best_epoch=epoch,
        mAP=round(100 * rec['coco/bbox_mAP'], 2),
        mAP50=round(100 * rec['coco/bbox_mAP_50'], 2),
        train_s=round(train_s, 1),
        resumed=resume,
        checkpoint=repo_path(ckpt),
        val_mAP=val_curve(work),
        cfg_options=opts,
        config_digest=config_digest(config, opts),
        git_commit=commit,
        versions=stack_versions())
    with atomic_write(osp.join(work, 'result.json')) as f:
        json.dump(res, f, indent=1)
    return res


def ablation_fields(args):
    """What a run of an ablation records of it."""
    return dict(ablation=args.ablation, ablation_options=args.cfg_options) \
        if args.ablation else {}


def recorded_choice(results):
    """The ``weight_choice`` of the results file ``results`` ({} when it or
    the file is missing)."""
    if not osp.isfile(results):
        return {}
    with open(results) as f:
        return json.load(f).get('weight_choice', {})


def write_results(args, commit, results, jobs, others=()):
    """The results JSON: protocol, the commit the runs started from,
    finished runs (``others``: recorded runs this call does not make, kept
    first), this call's missing runs."""
    spec = DATASETS[args.dataset]
    protocol = spec['protocol'].format(
        milestones=milestones(args), **vars(args))
    if args.cfg_options and not args.ablation:  # an ablation's are per run
        protocol += '; cfg options ' + ' '.join(args.cfg_options)
    # the choices of earlier calls stay with their runs
    choice = recorded_choice(args.results)
    choice.update(args.weight_choice)
    if choice:
        protocol += ('; each CDS variant at the options of its best-val run '
                     'in its weight screen (weight_choice)')
    have = {(r['variant'], r['seed']) for r in results}
    out = dict(
        benchmark='benchmarks/det_accuracy_seeds.py',
        protocol=protocol,
        # the variant that is the config as it is
        shipped_variant=config_heads(args.config)[1],
        git_commit=commit,
        date=datetime.date.today().isoformat(),
        # paths inside the repo relative to it: no machine path is recorded
        args={
            k: repo_path(v)
            if k in ('work_dir', 'results', 'weights_from') and v else v
            for k, v in vars(args).items() if k != 'weight_choice'
        },
        runs=list(others) + results,
        **(dict(weight_choice=choice) if choice else {}),
        missing=[
            dict(
                variant=v,
                seed=s,
                **(dict(ablation=args.ablation) if args.ablation else {}))
            for v, s in jobs if (v, s) not in have
        ])
    with atomic_write(args.results) as f:
        json.dump(out, f, indent=1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', choices=list(DATASETS), default='mosaic')
    parser.add_argument(
        '--data-root', default=DEBIAN_ROOT, help='Fashion-MNIST IDX files')
    parser.add_argument(
        '--data-dir',
        help='generated data (default: data/fashion_mosaic or data/dense; '
        'the dense test set goes to <data-dir>_test)')
    for name in ('epochs', 'num-train', 'num-val', 'num-test'):
        parser.add_argument(
            f'--{name}', type=int, help='default: per --dataset')
    parser.add_argument(
        '--config',
        help="default: the --dataset's demo config (e.g. another init of "
        'the same detector: benchmarks/det_pretrained_backbone.py)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=list(VARIANTS),
        help="default: 'off', 'img' when the config has an image-level head, "
        'and the variant that is the config as it is')
    parser.add_argument(
        '--work-dir', help='default: work_dirs/bench_det_accuracy or _dense')
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
        '--ablation',
        help='name of an ablation (with --cfg-options): its runs train in '
        '<work-dir>/<ablation>_<variant>_seed<s> and are keyed by it in the '
        'results file')
    parser.add_argument(
        '--weights-from',
        help='a weight screen (a results file of --ablation runs, e.g. '
        'benchmarks/results/det_mosaic_weight_screen.json): each CDS variant '
        'runs with the options of its run with the best val mAP there')
    args = parser.parse_args(argv)
    spec = DATASETS[args.dataset]
    for key in ('data_dir', 'epochs', 'num_train', 'num_val', 'num_test'):
        if getattr(args, key) is None:
            setattr(args, key, spec[key])
    if args.work_dir is None:
        args.work_dir = 'work_dirs/bench_det_' + dict(
            mosaic='accuracy', dense='dense')[args.dataset]
    if args.config is None:
        args.config = spec['config']
    heads, shipped = config_heads(args.config)
    if args.variants is None:  # with the image-level head, it alone too
        args.variants = list(
            dict.fromkeys(['off'] + ['img'] * ('cds_head' in heads) +
                          [shipped]))
    for variant in args.variants:
        for head in set(VARIANTS[variant][2]) - set(heads):
            parser.error(f'--variants {variant} needs model.{head}, which '
                         f'{args.config} sets to None')
    if min(args.epochs, args.num_train, args.num_val, args.num_test) < 1:
        parser.error('--epochs, --num-train, --num-val and --num-test must '
                     'be >= 1')
    # the runs' working directory is the repo: make the paths independent of
    # the caller's; data inside the repo stays relative to it, so that the
    # recorded options match on another checkout
    for key in ('data_root', 'work_dir'):
        setattr(args, key, osp.abspath(getattr(args, key)))
    args.data_dir = repo_path(args.data_dir)
    args.weight_choice = screen_choice(
        args.weights_from, args.variants) if args.weights_from else {}
    if args.results is None:
        args.results = osp.join(args.work_dir, 'results.json')
    args.results = osp.abspath(args.results)
    return args


def main(argv=None):
    args = parse_args(argv)
    start, commit = time.time(), git_commit()  # the code the runs start from
    build_data(args)
    os.makedirs(args.work_dir, exist_ok=True)
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    state = dict(durations=[], recorded=recorded_runs(args.results, run_key))
    others = other_runs(state['recorded'], args.ablation, jobs)
    # runs to train, for the ETA (an earlier result with other options stops
    # here, before any training)
    todo = [
        job for job in jobs
        if run_result(args, *job, state['recorded']) is None
    ]
    if not osp.isfile(args.results):  # a file that lists the missing runs
        write_results(args, commit, [], jobs)
    results, failures = [], []
    for i, (variant, seed) in enumerate(jobs):
        tag = f'run {i + 1}/{len(jobs)} {variant} seed {seed}'
        state['queued'] = len([j for j in todo if jobs.index(j) > i])
        t = time.time()
        try:
            res = one_run(args, variant, seed, tag, state)
        except (SystemExit, Exception) as exc:  # the others go on
            failures.append(f'{tag}: {exc}')
            say(f'[{tag}] FAILED: {exc}')
            continue
        if (variant, seed) in todo:
            state['durations'].append(time.time() - t)
        say(f'[{tag}] test mAP {res["mAP"]:.2f}, mAP@50 {res["mAP50"]:.2f}, '
            f'best val epoch {res["best_epoch"] or "last"}/{args.epochs}')
        results.append(res)
        write_results(args, commit, results, jobs, others)
    write_results(args, commit, results, jobs, others)
    say(f'{len(results)}/{len(jobs)} runs; results in {args.results}')

    say(f'\n{DATASETS[args.dataset]["name"]} test bbox mAP (%), '
        f'{len(args.seeds)} seeds, {args.epochs} epochs on {args.num_train} '
        f'train images, checkpoint picked on {args.num_val} val images, '
        f'tested on {args.num_test}; wall time {time.time() - start:.0f} s')
    say('| method | test mAP | test mAP@50 | per seed (mAP) | best epoch '
        '(val) | train time (s) |')
    say('|---|---|---|---|---|---|')
    for variant in args.variants:
        rows = [r for r in results if r['variant'] == variant]
        if not rows:
            continue
        per_seed = ', '.join(f'{r["seed"]}: {r["mAP"]:.2f}' for r in rows)
        say(f'| {VARIANTS[variant][0]} | '
            f'{mean_std([r["mAP"] for r in rows])} | '
            f'{mean_std([r["mAP50"] for r in rows])} | {per_seed} | '
            f'{",".join(str(r["best_epoch"] or "last") for r in rows)} | '
            f'{mean_std([r["train_s"] for r in rows])} |')
    if failures:
        raise SystemExit(f'{len(failures)} run(s) failed:\n' +
                         '\n'.join(failures))


if __name__ == '__main__':
    main()
