"""Semi-supervised and distilled CDS on Fashion-MNIST at convergence, several
seeds; one resumable command per setting, each writing one results JSON.

The protocol is the classification benchmark's (``cls_accuracy_seeds.py``):
ResNet-18 (CIFAR stem, 1/4 width, PyTorch's default init), 10,000 training
images, a 5,000-image val split carved from train, the 10,000 test images at
28 px, 15 epochs, batch 128; the checkpoint with the best val accuracy is
tested once. Runs go through ``tools/train.py`` / ``tools/test.py`` in
subprocesses and record what ``cls_accuracy_seeds.py`` records (test top-1,
ECE and reliability bins, best epoch, val curve, losses, times, options,
config digest, the git commit at the run's start, stack versions).

``semi``: config ``resnet18-w16_semi-cds-20p_fashionmnist.py``; 20 % of the
training images keep their labels (class-stratified split file made once by
``tools/dataset_converters/make_semi_split.py``, split seed 0 for every
run). Each batch holds 32 labelled + 96 unlabelled images
(``mmdet.MultiSourceSampler``, infinite, so the loop counts iterations): an
*epoch* here is one pass of the sampler over the unlabelled images,
``ceil(#unlabelled / 96)`` iterations (84 at 10,000 images), which sees each
labelled image about 1.3 times. Val, checkpoints and the schedule follow
these epochs. Methods: ``sup`` (``model.mode=off``: CE on the labelled rows
of the same batches), ``semi_cds`` (CDS on the labelled rows + SimCLR on the
unlabelled ones) and ``cds_labelled`` (``unlabelled_weight=0``)::

    python benchmarks/semi_kd_accuracy_seeds.py semi --workers 1

``kd``: one CDS teacher (seed 0) is trained and exported with
``tools/export_plain.py``: by default the CDS student's config on all 55,000
training images outside the val split for 5 epochs, since a deeper network
on the protocol's 10,000 images was no stronger (``--teacher-config``,
``--teacher-train-samples``, ``--teacher-epochs``; val and test stay the
protocol's). Then ``student`` (the classification config,
``model.mode=off``), ``cds_student`` (the same, CDS), ``kd``
(``resnet18-w16_distilled-cds_r50-w16_fashionmnist.py`` with
``model.teacher`` set to the teacher's config, ``model.mode=off``: CE +
logit KD) and ``distilled_cds`` (the same, CDS + KD + head matching).
``student`` / ``cds_student`` train the very configs of the classification
benchmark's ``off`` / ``cds`` runs: with the same options (``--workers 1``
as there) their recorded runs are taken (``taken_from``), not trained
again. A warning is printed unless the teacher's test top-1 is
at least 1 point above the CDS student's mean::

    python benchmarks/semi_kd_accuracy_seeds.py kd --workers 1

CPU-scale (2 cores). Resumable as ``cls_accuracy_seeds.py``: a run recorded
with the same options and config digest is not repeated, a run cut short
resumes from its last checkpoint, ``--retrain`` trains the selected runs
again. The results (``benchmarks/results/{semi,kd}_accuracy.json`` by
default; runs of an older layout there are replaced) are rewritten after
every run; progress and ETA are printed while a run trains.
"""
import argparse
import datetime
import glob
import json
import math
import os
import os.path as osp
import pickle
import re
import shutil
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # cds_mm from this checkout

from benchmarks import cls_accuracy_seeds as cls
from benchmarks.common import (config_digest, earlier_result, git_commit,
                               mean_std, run, say, stack_versions, take_twin,
                               watch_training)
from cds_mm.utils import atomic_write

SEMI_CONFIG = 'configs/demo/resnet18-w16_semi-cds-20p_fashionmnist.py'
# the teacher: the CDS student's config on all 55,000 training images
# outside the val split, 5 epochs (a ResNet-50 at 1/4 width on the protocol's
# 10,000 scored 89.82 test top-1, below the CDS student: kd_teacher_r50-w16)
TEACHER_CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
TEACHER_TRAIN_SAMPLES, TEACHER_EPOCHS = 55000, 5
KD_CONFIG = 'configs/demo/resnet18-w16_distilled-cds_r50-w16_fashionmnist.py'
# method -> (table name, config, model.mode, extra options / teacher needed)
SEMI_METHODS = {
    'sup': ('supervised-only (CE on the labelled)', 'off', []),
    'semi_cds':
    ('semi-supervised CDS (+ SimCLR on the unlabelled)', 'cds', []),
    'cds_labelled':
    ('CDS on the labelled only', 'cds', ['model.unlabelled_weight=0.0'])
}
KD_METHODS = {
    'student': ('plain student', cls.CONFIG, 'off'),
    'cds_student': ('CDS student', cls.CONFIG, 'cds'),
    'kd': ('plain KD', KD_CONFIG, 'off'),
    'distilled_cds':
    ('distilled CDS (KD + CDS + head matching)', KD_CONFIG, 'cds')
}
TEACHER_MARGIN = 1.0  # test top-1 points the teacher should lead by
VAL_RE = re.compile(
    r'Iter\(val\)\s+\[\s*\d+/\d+\]\s+accuracy/top1:\s*([\d.]+)')


def data_opts(args, train_ds='train_dataloader.dataset'):
    """Data root, subset sizes and loader workers of every split, as the
    classification benchmark sets them (``train_ds``: the training set's
    key, nested in the semi config's split wrapper)."""
    opts = [
        f'{train_ds}.max_samples={args.train_samples}',
        f'{train_ds}.val_size={args.val_samples}',
        f'{train_ds}.data_root={args.data_root}',
        f'val_dataloader.dataset.val_size={args.val_samples}'
    ]
    for split in ('val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={args.data_root}')
    for split in ('train', 'val', 'test'):
        if args.workers is not None:
            opts.append(f'{split}_dataloader.num_workers={args.workers}')
            if args.workers == 0:  # torch refuses persistent workers then
                opts.append(f'{split}_dataloader.persistent_workers=False')
    return opts


# ----------------------------------------------------------------- semi


def semi_split(args):
    """The split file's options (made once, kept by the tool when it holds
    the same fraction, seed and size) and the iterations of one epoch."""
    pct = round(100 * args.label_fraction)
    split_file = osp.join(args.work_dir,
                          f'split_{args.train_samples}_{pct}p_seed0.json')
    opts = data_opts(args, 'train_dataloader.dataset.dataset') + [
        f'train_dataloader.dataset.split_file={split_file}',
        f'train_dataloader.dataset.fraction={args.label_fraction}'
    ]
    run([
        sys.executable, 'tools/dataset_converters/make_semi_split.py',
        SEMI_CONFIG, '--cfg-options', *opts
    ], osp.join(args.work_dir, 'make_semi_split.log'))
    with open(osp.join(REPO, split_file)) as f:
        unlabelled = len(json.load(f)['unlabelled'])
    from mmengine.config import Config
    sampler = Config.fromfile(osp.join(REPO,
                                       SEMI_CONFIG)).train_dataloader.sampler
    # mmdet's MultiSourceSampler: int(batch * ratio / sum) per later source
    per_batch = int(sampler.batch_size * sampler.source_ratio[1] /
                    sum(sampler.source_ratio))
    return opts, math.ceil(unlabelled / per_batch)


def semi_schedule_opts(args, per_epoch):
    """Iterations, val and checkpoints of ``args.epochs`` epochs; the
    config's schedule stretched to them (a one-cycle pair as the
    classification config's, or one cosine)."""
    iters = args.epochs * per_epoch
    opts = [
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={per_epoch}',
        f'default_hooks.checkpoint.interval={per_epoch}',
        'default_hooks.logger.log_metric_by_epoch=False'  # val step: iter
    ]
    from mmengine.config import Config
    sched = Config.fromfile(osp.join(REPO, SEMI_CONFIG)).param_scheduler
    if isinstance(sched, dict):
        return opts + [f'param_scheduler.T_max={iters}']
    warm = round(0.15 * iters)
    return opts + [
        f'param_scheduler.0.end={warm}', f'param_scheduler.1.begin={warm}',
        f'param_scheduler.1.end={iters}'
    ]


def train_iterations(cmd, log, env, tag, iters, state):
    """Run an iteration-based training subprocess; every 30 s print its
    epoch, iteration and ETA (this attempt's pace)."""

    def report(line, val, left):
        state['run_left'][tag] = left
        val = f', last val top-1 {float(val):.2f}' if val else ''
        say(f'[{tag}] {line}{val}; ETA this run {left / 60:.0f} min, '
            f'all runs {state["eta"]() / 60:.0f} min')

    try:
        watch_training(
            cmd,
            log,
            state['epochs'],
            VAL_RE,
            report,
            env,
            iters_per_epoch=iters // state['epochs'])
    finally:
        state['run_left'].pop(tag, None)


def semi_opts(args, method, seed, state):
    """The ``--cfg-options`` of one semi-supervised run."""
    _, mode, extra = SEMI_METHODS[method]
    return state['split_opts'] + semi_schedule_opts(
        args, state['per_epoch']) + [
            f'model.mode={mode}', *extra, f'randomness.seed={seed}',
            *args.cfg_options
        ]


def semi_run(args, method, seed, tag, state):
    """Train one semi-supervised run, test its best-val checkpoint once;
    the run's result dict (as ``cls_accuracy_seeds.one_run``'s)."""
    mode, per_epoch = SEMI_METHODS[method][1], state['per_epoch']
    work = osp.join(args.work_dir, f'{method}_seed{seed}')
    opts = semi_opts(args, method, seed, state)
    digest = config_digest(SEMI_CONFIG, opts)
    done_file = osp.join(work, 'result.json')
    if args.retrain and osp.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    res = None if args.retrain else earlier_result(
        state['recorded'].get((method, mode, seed)), done_file, opts, digest)
    if res is not None:
        say(f'[{tag}] finished before with the same options, not repeated')
        return res
    env, py, start = cls.child_env(args), sys.executable, time.time()
    commit = git_commit()  # the code the run trains with
    resume = ['--resume'] if osp.isfile(osp.join(work, 'last_checkpoint')) \
        else []
    say(f'[{tag}] training{" (resumed)" if resume else ""} in {work}')
    train_iterations([
        py, 'tools/train.py', SEMI_CONFIG, '--work-dir', work, *resume,
        '--cfg-options', *opts
    ], osp.join(work, 'train.log'), env, tag, args.epochs * per_epoch, state)
    train_s = time.time() - start
    val = {
        -(-it // per_epoch): v
        for it, v in cls.read_curves(work)[0].items()
    }

    def epoch_of(path):  # best_accuracy_top1_iter_<it>.pth
        return -(-int(path.rsplit('_', 1)[1][:-len('.pth')]) // per_epoch)

    best = glob.glob(osp.join(work, 'best_accuracy_top1_iter_*.pth'))
    if not best:
        raise SystemExit(f'no best checkpoint in {work}')
    # a resumed run can leave two (see common.best_checkpoint)
    best = max(best, key=lambda p: val.get(epoch_of(p), -1))
    preds = osp.join(work, 'test_preds.pkl')
    run([
        py, 'tools/test.py', SEMI_CONFIG, best, '--work-dir',
        osp.join(work, 'test'), '--out', preds, '--cfg-options', *opts
    ], osp.join(work, 'test.log'), env)
    with open(preds, 'rb') as f:
        samples = pickle.load(f)
    res = dict(
        method=method,
        mode=mode,
        seed=seed,
        best_epoch=epoch_of(best),
        **cls.ece_stats(samples),
        n_test=len(samples),
        best_val_top1=max(val.values()) if val else None,
        val_top1=[val[e] for e in sorted(val)],
        iters_per_epoch=per_epoch,
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


# ----------------------------------------------------------------- kd


def method_args(args, name, config, extra=()):
    """``args`` as ``cls_accuracy_seeds.one_run`` reads them for one method
    (its ``--ablation`` is the method: work dir ``<method>_<mode>_seed<s>``,
    results key ``(method, mode, seed)``)."""
    return argparse.Namespace(**dict(
        vars(args),
        config=config,
        variant=name,
        cfg_options=list(extra) + list(args.cfg_options)))


def as_method(res):
    """A ``cls_accuracy_seeds.one_run`` result with ``method`` for its
    ablation name."""
    out = {k: v for k, v in res.items() if k not in ('variant', 'method')}
    return dict(method=res.get('method', res.get('variant')), **out)


def teacher_run(args, state):
    """Train (or take the recorded) teacher, export it; its result with
    ``export`` (the folder of ``plain.pth`` and ``heads.pth``)."""
    targs = method_args(args, 'teacher', args.teacher_config)
    targs.retrain = args.retrain_teacher
    targs.train_samples = args.teacher_train_samples
    targs.epochs = args.teacher_epochs
    res = as_method(cls.one_run(targs, 'cds', 0, 'teacher', state))
    export = osp.join(osp.dirname(res['checkpoint']), 'export')
    if not osp.isfile(osp.join(REPO, export, 'heads.pth')):
        if not osp.isfile(osp.join(REPO, res['checkpoint'])):
            raise SystemExit(
                f'the teacher checkpoint {res["checkpoint"]} is gone and '
                'not exported: add --retrain-teacher (and --retrain, so '
                'that the KD runs learn from the new teacher)')
        run([
            sys.executable, 'tools/export_plain.py', args.teacher_config,
            res['checkpoint'], '--out-dir', export
        ], osp.join(REPO, osp.dirname(export), 'export.log'))
    return dict(
        res,
        config=args.teacher_config,
        train_samples=args.teacher_train_samples,
        epochs=args.teacher_epochs,
        export=export)


def kd_run(args, method, seed, tag, state):
    _, config, mode = KD_METHODS[method]
    extra = []
    if config == KD_CONFIG:
        export = state['teacher']['export']
        extra = [
            f'model.teacher={args.teacher_config}',
            f'model.teacher_ckpt={export}/plain.pth',
            f'model.teacher_heads_ckpt={export}/heads.pth'
        ]
    margs = method_args(args, method, config, extra)
    if config == cls.CONFIG and not args.retrain:
        res = classification_run(margs, mode, seed, tag)
        if res is not None:
            return as_method(res)
    return as_method(cls.one_run(margs, mode, seed, tag, state))


def classification_run(margs, mode, seed, tag):
    """``student`` / ``cds_student``: the classification benchmark's run of
    ``mode`` and ``seed`` with the same options, recorded in
    ``cls_accuracy.json`` beside the results (``taken_from`` names its work
    dir); None when there is none. Options decide, not the config digest:
    those runs may predate digests or later config edits, and the KD table
    is to compare with the numbers the classification table reports."""
    path = osp.join(osp.dirname(margs.results), 'cls_accuracy.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        runs = json.load(f)['runs']
    opts = cls.run_opts(margs, mode, seed)
    for run_ in runs:
        if (run_['mode'], run_['seed'], run_.get('variant'),
                run_['cfg_options']) == (mode, seed, None, opts):
            work = osp.join(margs.work_dir,
                            f'{margs.variant}_{mode}_seed{seed}')
            os.makedirs(work, exist_ok=True)
            return take_twin(
                run_,
                osp.join(work, 'result.json'),
                tag, ('variant', 'extra_options', 'config_digest'),
                mode=mode,
                seed=seed,
                cfg_options=opts,
                **cls.variant_fields(margs))
    return None


def teacher_warning(teacher, runs):
    """A warning when the teacher's test top-1 is not ``TEACHER_MARGIN``
    points above the CDS student's mean; None when it is, or when either is
    not recorded yet."""
    cds = [r['top1'] for r in runs if r['method'] == 'cds_student']
    if not teacher or not cds:
        return None
    gap = teacher['top1'] - statistics.mean(cds)
    if gap >= TEACHER_MARGIN:
        return None
    return (f'WARNING: the teacher ({teacher["top1"]:.2f} test top-1) is '
            f'{gap:+.2f} points from the CDS student '
            f'({statistics.mean(cds):.2f}, {len(cds)} seeds), not '
            f'>= {TEACHER_MARGIN:g} above: distillation has little to pass '
            'on; use a stronger teacher')


# ----------------------------------------------------------------- both


def run_key(res):
    return res['method'], res['mode'], res['seed']


def read_recorded(path):
    """The runs (by ``run_key``) and teacher an earlier results file of this
    layout holds; none for another layout (the 4-epoch files), which this
    call replaces."""
    if not osp.isfile(path):
        return {}, None
    with open(path) as f:
        data = json.load(f)
    if not all('method' in r for r in data.get('runs', [])):
        say(f'{path} holds runs of another layout (no "method"); they are '
            'replaced')
        return {}, None
    return {run_key(r): r for r in data['runs']}, data.get('teacher')


def write_results(args, commit, runs, missing, teacher=None):
    out = dict(
        benchmark=f'benchmarks/semi_kd_accuracy_seeds.py {args.setting}',
        protocol=(f'{args.train_samples} training images, '
                  f'{args.val_samples} val images carved from train, the '
                  f'10,000 test images; {args.epochs} epochs; the best-val '
                  'checkpoint is tested once; see the script docstring'),
        git_commit=commit,
        date=datetime.date.today().isoformat(),
        args=vars(args),
        runs=runs,
        missing=[dict(method=m, seed=s) for m, s in missing])
    if teacher is not None:
        out['teacher'] = teacher
    with atomic_write(args.results) as f:
        json.dump(out, f, indent=1)


def parse_args(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--data-root', default=cls.DEBIAN_ROOT)
    common.add_argument('--epochs', type=int, default=15)
    common.add_argument('--train-samples', type=int, default=10000)
    common.add_argument('--val-samples', type=int, default=5000)
    common.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    common.add_argument('--work-dir', help='default: work_dirs/bench_<x>')
    common.add_argument(
        '--results',
        help='results JSON (default: benchmarks/results/<x>_accuracy.json)')
    common.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides added to every run')
    common.add_argument(
        '--retrain',
        action='store_true',
        help='train the selected runs again even when recorded')
    common.add_argument(
        '--workers',
        type=int,
        default=None,
        help="data loader workers per run (default: the config's)")
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='setting', required=True)
    semi = sub.add_parser('semi', parents=[common])
    semi.add_argument(
        '--methods',
        nargs='+',
        default=list(SEMI_METHODS),
        choices=list(SEMI_METHODS))
    semi.add_argument('--label-fraction', type=float, default=0.2)
    kd = sub.add_parser('kd', parents=[common])
    kd.add_argument(
        '--methods',
        nargs='+',
        default=list(KD_METHODS),
        choices=list(KD_METHODS))
    kd.add_argument('--teacher-config', default=TEACHER_CONFIG)
    kd.add_argument(
        '--teacher-train-samples',
        type=int,
        default=TEACHER_TRAIN_SAMPLES,
        help="the teacher's training images (the first of the training set "
        'outside the val split)')
    kd.add_argument('--teacher-epochs', type=int, default=TEACHER_EPOCHS)
    kd.add_argument(
        '--retrain-teacher',
        action='store_true',
        help='train the teacher again even when recorded')
    args = parser.parse_args(argv)
    args.parallel = 1  # one run at a time (cls_accuracy_seeds.child_env)
    args.work_dir = args.work_dir or f'work_dirs/bench_{args.setting}'
    args.results = args.results or osp.join('benchmarks', 'results',
                                            f'{args.setting}_accuracy.json')
    return args


def main(argv=None):
    args = parse_args(argv)
    commit = git_commit()  # the code the runs start from
    os.makedirs(args.work_dir, exist_ok=True)
    recorded, teacher = read_recorded(args.results)
    jobs = [(m, s) for s in args.seeds for m in args.methods]
    needs_teacher = args.setting == 'kd' and any(KD_METHODS[m][1] == KD_CONFIG
                                                 for m in args.methods)
    durations, done, failures = [], {}, []
    state = dict(
        run_left={}, epochs=args.epochs, recorded=dict(recorded), teacher={})

    def eta():
        """Seconds left: the running run's ETA plus the runs not started."""
        left = sum(state['run_left'].values())
        queued = len(jobs) - len(done) - len(failures) - 1
        per_run = statistics.mean(durations) if durations else left * 2
        return left + max(queued, 0) * per_run

    state['eta'] = eta
    mine = {(m, s) for m, s in jobs}
    others = [r for k, r in recorded.items() if (k[0], k[2]) not in mine]
    if args.setting == 'semi':
        state['split_opts'], state['per_epoch'] = semi_split(args)
        one = semi_run
    else:
        one = kd_run
        if needs_teacher:
            if teacher is not None:
                state['recorded'][('teacher', 'cds', 0)] = teacher
            teacher = state['teacher'] = teacher_run(args, state)
            say(f'[teacher] test top-1 {teacher["top1"]:.2f}, ECE '
                f'{teacher["ece"]:.2f}, best val epoch '
                f'{teacher["best_epoch"]}/{teacher["epochs"]}')
            write_results(args, commit, list(recorded.values()), jobs, teacher)
    for i, (method, seed) in enumerate(jobs):
        tag = f'run {i + 1}/{len(jobs)} {method} seed {seed}'
        t = time.time()
        try:
            res = one(args, method, seed, tag, state)
        except (SystemExit, Exception) as exc:  # the others go on
            failures.append(f'{tag}: {exc}')
            say(f'[{tag}] FAILED: {exc}')
            continue
        if res.get('train_s') and time.time() - t > 60:
            durations.append(time.time() - t)
        done[(method, seed)] = res
        say(f'[{tag}] test top-1 {res["top1"]:.2f}, ECE {res["ece"]:.2f}, '
            f'best val epoch {res["best_epoch"]}/{args.epochs}')
        write_results(args, commit, others + list(done.values()),
                      [j for j in jobs if j not in done], teacher)
    runs = others + list(done.values())
    write_results(args, commit, runs, [j for j in jobs if j not in done],
                  teacher)
    print_table(args, runs, teacher)
    if failures:
        raise SystemExit(f'{len(failures)} run(s) failed:\n' +
                         '\n'.join(failures))


def print_table(args, runs, teacher):
    names = SEMI_METHODS if args.setting == 'semi' else KD_METHODS
    say(f'\nFashion-MNIST test top-1 / ECE (%), {args.setting}, '
        f'{args.epochs} epochs on {args.train_samples} train images; '
        f'checkpoint picked on val; results in {args.results}')
    say('| method | test top-1 | test ECE | best epoch (val) |')
    say('|---|---|---|---|')
    for method in names:
        rows = [r for r in runs if r['method'] == method]
        if rows:
            say(f'| {names[method][0]} | '
                f'{mean_std([r["top1"] for r in rows])} | '
                f'{mean_std([r["ece"] for r in rows])} | '
                f'{",".join(str(r["best_epoch"]) for r in rows)} |')
    if teacher:
        say(f'\nteacher ({teacher.get("config")}, seed 0): test top-1 '
            f'{teacher["top1"]:.2f}')
        warning = teacher_warning(teacher, runs)
        if warning:
            say(warning)


if __name__ == '__main__':
    main()
