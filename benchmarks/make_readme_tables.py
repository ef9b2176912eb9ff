"""Write the results tables of the READMEs from the JSON in
benchmarks/results/.

Each table sits between two marker lines::

    <!-- generated: cls_accuracy -->
    ...
    <!-- end generated: cls_accuracy -->

The studies' tables (``RENDERERS``, one per results file of the same name)
live in ``benchmarks/README.md``, some again in the per-method READMEs under
``configs/``; the top-level README shows the small summary tables
(``SUMMARIES``, each rendered from the results files it names). So a number
in a table is always the committed JSON's. ``--check`` only compares (exit 1
on a difference); ``tests/benchmarks/test_readme_tables.py`` runs the check.

    python benchmarks/make_readme_tables.py           # rewrite the READMEs
    python benchmarks/make_readme_tables.py --check
"""
import argparse
import json
import os.path as osp
import re
import statistics
import sys
from typing import Callable, Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(REPO, 'benchmarks', 'results')
README = osp.join(REPO, 'README.md')
# every study's table
BENCHMARKS_README = osp.join(REPO, 'benchmarks', 'README.md')
# the per-method READMEs that show a generated table too
METHOD_READMES = [
    osp.join(REPO, 'configs', name, 'README.md')
    for name in ('cds_classification', 'cds_detection', 'cds_semi',
                 'cds_distill', 'demo')
]
BLOCK_RE = re.compile(
    r'(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)'
    r'(<!-- end generated: (?P=name) -->)', re.S)
MODE_NAMES = {
    'off': 'baseline (`off`)',
    'dsn': 'DSN (`dsn`)',
    'cds': 'CDS (`cds`)'
}


def mean_std(values: List[float], fmt: str = '{:.2f}') -> str:
    """``'mean ± sample std'``, each as ``fmt``; one value alone."""
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt.format(statistics.mean(values)) + ' ± ' +
            fmt.format(statistics.stdev(values)))


def seeds_of(runs: List[dict]) -> str:
    return ', '.join(str(r['seed']) for r in runs)


def per_seed(runs: List[dict], key: str, sign: bool = False) -> str:
    fmt = '{:+.2f}' if sign else '{:.2f}'
    return ', '.join(fmt.format(r[key]) for r in runs)


def by_key(runs: List[dict], key: str) -> Dict[str, List[dict]]:
    """Runs grouped by ``key`` (first-seen order), each group by seed."""
    groups: Dict[str, List[dict]] = {}
    for r in runs:
        groups.setdefault(r[key], []).append(r)
    return {k: sorted(v, key=lambda r: r['seed']) for k, v in groups.items()}


def paired_differences(groups: Dict[str, List[dict]], pairs, key: str,
                       names: Dict[str, str], metric: str) -> List[str]:
    """Lines of a table of same-seed differences ``a - b`` of ``key``, one
    row per pair whose methods both ran; no lines when none did."""
    rows = []
    for a, b in pairs:
        other = {r['seed']: r for r in groups.get(b, [])}
        diffs = [
            dict(seed=r['seed'], d=r[key] - other[r['seed']][key])
            for r in groups.get(a, []) if r['seed'] in other
        ]
        if diffs:
            rows.append(f'| {names[a]} − {names[b]} | {seeds_of(diffs)} | '
                        f'{per_seed(diffs, "d", sign=True)} | '
                        f'{mean_std([x["d"] for x in diffs])} |')
    if not rows:
        return []
    return [
        '', f'Paired differences of {metric} (same seed, points):', '',
        '| difference | seeds | per seed | mean ± std |', '|---|---|---|---|'
    ] + rows


def render_cls_accuracy(data: dict) -> str:
    """The converged classification table, paired differences, missing."""
    args, groups = data['args'], by_key(data['runs'], 'mode')
    order = list(MODE_NAMES)  # baseline, DSN, CDS; other modes after
    groups = dict(
        sorted(
            groups.items(),
            key=lambda kv: order.index(kv[0])
            if kv[0] in order else len(order)))
    epochs, commit = args['epochs'], data['git_commit']
    dirty = ' plus uncommitted changes' if commit.endswith('+dirty') else ''
    lines = [
        f"Measured on {data['date']} at commit `{commit[:12]}`{dirty}"
        f" (`{data['benchmark']}`), {args['train_samples']:,} training "
        f"images, {epochs} epochs; mean ± sample std over the seeds listed.",
        ''
    ]
    header = [
        '| method (`model.mode`) | seeds | test top-1 (%) | test ECE (%) | '
        'top-1 per seed | best val top-1 (%) | best val epoch '
        f'(of {epochs}) |', '|---|---|---|---|---|---|---|'
    ]
    lines += header if groups else ['No run has finished yet.']
    for mode, runs in groups.items():
        lines.append(f'| {MODE_NAMES.get(mode, mode)} | {seeds_of(runs)} | '
                     f'{mean_std([r["top1"] for r in runs])} | '
                     f'{mean_std([r["ece"] for r in runs])} | '
                     f'{per_seed(runs, "top1")} | '
                     f'{mean_std([r["best_val_top1"] for r in runs])} | '
                     f'{", ".join(str(r["best_epoch"]) for r in runs)} |')
    lines += paired_differences(
        groups, (('cds', 'off'), ('cds', 'dsn'), ('dsn', 'off')), 'top1',
        {m: n.split()[0]
         for m, n in MODE_NAMES.items()}, 'test top-1')
    missing = data.get('missing') or []
    if missing:
        lines += [
            '', 'Not run yet (the benchmark resumes them): ' + ', '.join(
                f"{MODE_NAMES.get(m['mode'], m['mode']).split()[0]} seed "
                f"{m['seed']}" for m in missing) + '.'
        ]
    return '\n'.join(lines)


def render_cls_ablations(data: dict, shipped: Optional[dict] = None) -> str:
    """One row per ablation (``--variant``) of the classification protocol;
    first the shipped config's runs of the same modes and seeds from
    ``shipped`` (the ``cls_accuracy`` results), to compare with. A variant
    run on several seeds also gets its paired differences to the shipped
    runs: best val top-1 against the same method, test top-1 against the
    same method and the baseline.
    """
    args, shipped_runs = data['args'], (shipped or {}).get('runs', [])
    ablations = by_key(
        [dict(r, row=(r['variant'], r['mode'])) for r in data['runs']], 'row')
    # the shipped runs once per set of seeds the ablations of a mode ran
    seed_sets = {(mode, tuple(r['seed'] for r in runs))
                 for (_, mode), runs in ablations.items()}
    groups = {}
    for mode, seeds in sorted(seed_sets, key=lambda x: (len(x[1]), x)):
        runs = [
            dict(r, extra_options=[]) for r in shipped_runs
            if r['mode'] == mode and r['seed'] in seeds
        ]
        if runs:
            groups[('shipped', mode, seeds)] = sorted(
                runs, key=lambda r: r['seed'])
    groups.update(ablations)
    lines = [
        f"Measured on {data['date']} (`{data['benchmark']}`), the protocol "
        f"above ({args['train_samples']:,} training images, {args['epochs']} "
        'epochs); each row adds its options to the shipped config (rows '
        '"shipped": the shipped config on the same seeds, from the table '
        'above).', '',
        '| variant | options | method | seeds | best val top-1 (%) | '
        'test top-1 (%) | test ECE (%) | best val epoch |',
        '|---|---|---|---|---|---|---|---|'
    ]
    diffs = []
    for (variant, mode, *_), runs in groups.items():
        extra = runs[0]['extra_options']
        options = f"`{' '.join(extra)}`" if extra else 'none'
        lines.append(f'| {variant} | {options} | {MODE_NAMES[mode]} | '
                     f'{seeds_of(runs)} | '
                     f'{mean_std([r["best_val_top1"] for r in runs])} | '
                     f'{mean_std([r["top1"] for r in runs])} | '
                     f'{mean_std([r["ece"] for r in runs])} | '
                     f'{", ".join(str(r["best_epoch"]) for r in runs)} |')
        if variant == 'shipped' or len(runs) < 2:
            continue
        name = f'{variant} {MODE_NAMES[mode].split()[0]}'
        pairs = {
            name:
            runs,
            'shipped ' + MODE_NAMES[mode].split()[0]:
            [r for r in shipped_runs if r['mode'] == mode],
            'shipped baseline':
            [r for r in shipped_runs if r['mode'] == 'off']
        }
        names = {k: k for k in pairs}
        same = (name, f'shipped {MODE_NAMES[mode].split()[0]}')
        diffs += paired_differences(pairs, [same], 'best_val_top1', names,
                                    f'{name}: best val top-1')
        diffs += paired_differences(pairs, [same, (name, 'shipped baseline')],
                                    'top1', names, f'{name}: test top-1')
    return '\n'.join(lines + diffs)


def _short_header(data: dict) -> List[str]:
    # ``source`` (where the numbers were recovered from) stays in the JSON
    return [
        f"Measured on {data['date']} (`{data['benchmark']}`). "
        f"{data['protocol']}", ''
    ]


def render_semi_accuracy(data: dict) -> str:
    """The semi-supervised table (top-1 per seed, ECE as printed)."""
    lines = _short_header(data) + [
        '| method | seeds | test top-1 (%) | test ECE (%) | top-1 per seed |',
        '|---|---|---|---|---|'
    ]
    for variant, runs in by_key(data['runs'], 'variant').items():
        lines.append(_summary_row(data, variant, runs, 'top1', 'ece'))
    return '\n'.join(lines)


def _summary_row(data, variant, runs, metric, summary_key):
    summ = data['summary'][variant]
    std = summ[f'{summary_key}_std']
    second = f'{summ[summary_key + "_mean"]:.2f}' + (f' ± {std:.2f}' if std
                                                     is not None else '')
    return (f'| {data["names"][variant]} | {seeds_of(runs)} | '
            f'{mean_std([r[metric] for r in runs])} | {second} | '
            f'{per_seed(runs, metric)} |')


def render_kd_accuracy(data: dict) -> str:
    """The distillation table and which seeds distilled CDS beat plain KD."""
    groups = by_key(data['runs'], 'variant')
    lines = _short_header(data) + [
        '| method | seeds | test top-1 (%) | test ECE (%) | top-1 per seed |',
        '|---|---|---|---|---|'
    ]
    for variant, runs in groups.items():
        lines.append(_summary_row(data, variant, runs, 'top1', 'ece'))
    if 'kd' in groups and 'cds+kd' in groups:
        kd = {r['seed']: r['top1'] for r in groups['kd']}
        won = [
            r['seed'] for r in groups['cds+kd']
            if r['seed'] in kd and r['top1'] > kd[r['seed']]
        ]
        lines += [
            '', f'Distilled CDS beat plain KD on {len(won)} of '
            f'{len(groups["cds+kd"])} seeds (seeds '
            f'{", ".join(map(str, won)) or "none"}); teacher: '
            f'{data["teacher"]["top1"]:.2f} test top-1 (seed '
            f'{data["teacher"]["seed"]}).'
        ]
    return '\n'.join(lines)


# the methods of the converged semi-supervised and distillation studies
# (``benchmarks/semi_kd_accuracy_seeds.py semi|kd``), in table order
METHOD_NAMES = {
    'sup': 'supervised-only (CE on the labelled)',
    'semi_cds': 'semi-supervised CDS (+ SimCLR on the unlabelled)',
    'cds_labelled': 'CDS on the labelled only (`unlabelled_weight=0`)',
    'student': 'plain student (`mode=off`)',
    'cds_student': 'CDS student',
    'kd': 'plain KD (CE + logit KD, `mode=off`)',
    'distilled_cds': 'distilled CDS (CE + CDS + KD + head matching)',
}
# same-seed differences a - b each study reports (pairs that ran)
METHOD_PAIRS = [
    ('semi_cds', 'sup'),
    ('cds_labelled', 'sup'),
    ('semi_cds', 'cds_labelled'),
    ('cds_student', 'student'),
    ('kd', 'student'),
    ('distilled_cds', 'kd'),
    ('distilled_cds', 'cds_student'),
]


def render_method_accuracy(data: dict) -> str:
    """A converged semi-supervised or distillation table (runs keyed by
    ``method``): test top-1 and ECE, best val, paired differences of test
    top-1, the teacher, and the runs still missing."""
    args = data['args']
    order = list(METHOD_NAMES)
    groups = dict(
        sorted(
            by_key(data['runs'], 'method').items(),
            key=lambda kv: order.index(kv[0])
            if kv[0] in order else len(order)))
    commit = data['git_commit']
    dirty = ' plus uncommitted changes' if commit.endswith('+dirty') else ''
    labels = (f", {args['label_fraction']:.0%} of them labelled"
              if 'label_fraction' in args else '')
    lines = [
        f"Measured on {data['date']} at commit `{commit[:12]}`{dirty} "
        f"(`{data['benchmark']}`; each run records its own commit): "
        f"{args['train_samples']:,} training images{labels}, "
        f"{args['epochs']} epochs, the best-val checkpoint tested once; "
        'mean ± sample std over the seeds listed.', ''
    ]
    if groups:
        lines += [
            '| method | seeds | test top-1 (%) | test ECE (%) | top-1 per '
            f"seed | best val top-1 (%) | best val epoch (of {args['epochs']}"
            ') |', '|---|---|---|---|---|---|---|'
        ]
    else:
        lines.append('No run has finished yet.')
    for method, runs in groups.items():
        vals = [r['best_val_top1'] for r in runs]
        val = mean_std(vals) if None not in vals else '-'
        lines.append(f'| {METHOD_NAMES.get(method, method)} | '
                     f'{seeds_of(runs)} | '
                     f'{mean_std([r["top1"] for r in runs])} | '
                     f'{mean_std([r["ece"] for r in runs])} | '
                     f'{per_seed(runs, "top1")} | {val} | '
                     f'{", ".join(str(r["best_epoch"]) for r in runs)} |')
    lines += paired_differences(groups, METHOD_PAIRS, 'top1', METHOD_NAMES,
                                'test top-1')
    teacher = data.get('teacher')
    if teacher:
        trained = (f", {teacher['train_samples']:,} training images, "
                   f"{teacher['epochs']} epochs"
                   if 'train_samples' in teacher else '')
        lines += [
            '', f"Teacher: test top-1 {teacher['top1']:.2f} (seed "
            f"{teacher['seed']}, `{teacher.get('config', '?')}`{trained})."
        ]
    missing = data.get('missing') or []
    if missing:
        lines += [
            '', 'Not run yet (the benchmark resumes them): ' +
            ', '.join(f"{m['method']} seed {m['seed']}" for m in missing) + '.'
        ]
    return '\n'.join(lines)


def render_cls_calibration(data: dict) -> str:
    """Temperature scaling (``benchmarks/cls_calibration.py``): per method
    or ablation, the T fitted on val and test ECE and NLL before and after;
    same-seed ECE differences of CDS and the baseline where both ran."""
    groups: Dict[str, List[dict]] = {}
    for r in data['runs']:
        name = MODE_NAMES.get(r['method'], r['method'])
        if r.get('variant'):
            name = f"{r['variant']} {name}"
        groups.setdefault(name, []).append(r)
    lines = [
        f"Measured on {data['date']} (`{data['benchmark']}`) on the runs of "
        f"`{data['source']}`: {data['protocol']}. Mean ± sample std over "
        'the seeds listed.', '',
        '| runs | seeds | T (fit on val) | test ECE before (%) | test ECE '
        'after (%) | test NLL before | test NLL after | test top-1 (%) |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for name, runs in groups.items():
        runs.sort(key=lambda r: r['seed'])

        def col(key, fmt='{:.2f}'):
            return mean_std([r[key] for r in runs], fmt)

        lines.append(f'| {name} | {seeds_of(runs)} | {col("temperature")} | '
                     f'{col("test_ece_before")} | {col("test_ece_after")} | '
                     f'{col("test_nll_before", "{:.4f}")} | '
                     f'{col("test_nll_after", "{:.4f}")} | '
                     f'{col("top1_after")} |')
    cds, off = MODE_NAMES['cds'], MODE_NAMES['off']
    for when in ('before', 'after'):
        lines += paired_differences(groups, [(cds, off)], f'test_ece_{when}', {
            cds: 'CDS',
            off: 'baseline'
        }, f'test ECE {when} scaling')
    return '\n'.join(lines)


def render_det_accuracy(data: dict) -> str:
    """The short detection table (bbox mAP per seed, mAP@50 as printed)."""
    lines = _short_header(data) + [
        '| method | seeds | test bbox mAP (%) | test mAP@50 (%) | '
        'mAP per seed | best val epoch |', '|---|---|---|---|---|---|'
    ]
    for variant, runs in by_key(data['runs'], 'variant').items():
        row = _summary_row(data, variant, runs, 'bbox_mAP', 'mAP50')
        lines.append(row + ' ' +
                     ', '.join(map(str, data['best_epoch'][variant])) + ' |')
    return '\n'.join(lines)


DET_NAMES = {
    'off': 'baseline (`model.mode=off`)',
    'img': 'CDS image-level (`model.instance_head=None`)',
    'ins': 'CDS instance-level (`model.cds_head=None`)',
    'img+ins': 'CDS image + instance',
    'proposal': 'CDS proposal-level (`ProposalCDSHead`, the other heads off)'
}


def _det_name(variant: str, data: dict) -> str:
    """A variant's label; the config as it is (``shipped_variant``) needs no
    option; the weight chosen in a screen (``weight_choice``) follows."""
    name = DET_NAMES.get(variant, variant)
    if variant == data.get('shipped_variant'):
        name = name.split(' (')[0] + ' (the config as it is)'
    choice = data.get('weight_choice', {}).get(variant)
    if choice:
        options = ' '.join(choice['options'])
        name += f", {choice['ablation']} of the screen" + (
            f': `{options}`' if options else ', the weights as they are')
    return name


def _note(data: dict) -> List[str]:
    """A results file's ``note`` (e.g. the config it was made with), as
    lines after the caption."""
    return [data['note'], ''] if data.get('note') else []


def render_det_dense_accuracy(data: dict) -> str:
    """The 3-seed detection table on the dense set: test bbox mAP and
    mAP@50 of the best-val checkpoint, paired differences, missing runs."""
    args, commit = data['args'], data['git_commit']
    dirty = ' plus uncommitted changes' if commit.endswith('+dirty') else ''
    groups = by_key(data['runs'], 'variant')
    lines = [
        f"Measured on {data['date']} at commit `{commit[:12]}`{dirty} "
        f"(`{data['benchmark']}`): {data['protocol']}. Mean ± sample std "
        'over the seeds listed.', ''
    ] + _note(data)
    lines += [
        '| method | seeds | test bbox mAP (%) | test mAP@50 (%) | '
        'mAP per seed | best val mAP (%) | best val epoch '
        f"(of {args['epochs']}) |", '|---|---|---|---|---|---|---|'
    ] if groups else ['No run has finished yet.']
    for variant, runs in groups.items():
        best_val = [_best_val(r) for r in runs]
        lines.append(
            f'| {_det_name(variant, data)} | {seeds_of(runs)} | '
            f'{mean_std([r["mAP"] for r in runs])} | '
            f'{mean_std([r["mAP50"] for r in runs])} | '
            f'{per_seed(runs, "mAP")} | {mean_std(best_val)} | '
            f'{", ".join(str(r["best_epoch"] or "last") for r in runs)} |')
    names = {v: n.split(' (')[0] for v, n in DET_NAMES.items()}
    pairs = (('img', 'off'), ('ins', 'off'), ('img+ins', 'off'),
             ('proposal', 'off'), ('img+ins', 'img'), ('img+ins', 'ins'))
    lines += paired_differences(groups, pairs, 'mAP', names, 'test bbox mAP')
    missing = data.get('missing') or []
    if missing:
        lines += [
            '', 'Not run yet (the benchmark resumes them): ' +
            ', '.join(f"{names.get(m['variant'], m['variant'])} seed "
                      f"{m['seed']}" for m in missing) + '.'
        ]
    return '\n'.join(lines)


INIT_NAMES = dict(
    scratch='from scratch', ce='CE-pretrained', cds='CDS-pretrained')


def render_det_pretrained_backbone(data: dict) -> str:
    """The pretrained-backbone study: per detector and init, the
    pretraining's test top-1 beside the detection mAP it led to; paired
    differences; missing runs."""
    commit = data['git_commit']
    dirty = ' plus uncommitted changes' if commit.endswith('+dirty') else ''
    lines = [
        f"Measured on {data['date']} from commit `{commit[:12]}`{dirty} "
        f"(`{data['benchmark']}`; each run records its own commit and "
        f"stack versions): {data['protocol']}. Mean ± sample std over the "
        'seeds listed.', ''
    ]
    dets = by_key(data['runs'], 'detector')
    if not dets:
        lines.append('No detection run has finished yet.')
    for det, det_runs in dets.items():
        groups = by_key(det_runs, 'init')
        lines += [
            f'**{det}**', '', '| backbone | seeds | pretraining test top-1 '
            '(%) | test bbox mAP (%) | test mAP@50 (%) | mAP per seed | '
            'best val mAP (%) | best val epoch (of '
            f"{data['args']['epochs']}) |", '|---|---|---|---|---|---|---|---|'
        ]
        for init in (i for i in INIT_NAMES if i in groups):
            runs = groups[init]
            top1 = [r['pretrain_top1'] for r in runs if 'pretrain_top1' in r]
            lines.append(f'| {INIT_NAMES[init]} | {seeds_of(runs)} | '
                         f'{mean_std(top1) if top1 else "-"} | '
                         f'{mean_std([r["mAP"] for r in runs])} | '
                         f'{mean_std([r["mAP50"] for r in runs])} | '
                         f'{per_seed(runs, "mAP")} | '
                         f'{mean_std([_best_val(r) for r in runs])} | '
                         f'{", ".join(str(r["best_epoch"]) for r in runs)} |')
        lines += paired_differences(groups, (
            ('cds', 'ce'), ('ce', 'scratch'),
            ('cds', 'scratch')), 'mAP', INIT_NAMES, 'test bbox mAP') + ['']
    missing = data.get('missing') or []
    if missing:
        lines.append('Not run yet (the benchmark resumes them): ' + ', '.join(
            f"{m['detector']} {INIT_NAMES[m['init']]} seed {m['seed']}"
            for m in missing) + '.')
    return '\n'.join(lines).rstrip('\n')


def _best_val(run: dict) -> float:
    # no val entry: no detection in any epoch (CocoMetric logs nothing)
    return max((p['mAP'] for p in run['val_mAP']), default=0.0)


def render_det_dense_ablations(data: dict,
                               shipped: Optional[dict] = None) -> str:
    """One row per ablation (``--ablation``) of the dense detection study,
    each after the runs of the config as it is of the same method and seeds
    from ``shipped`` (rows "as is"); best val bbox mAP (what a choice rests
    on) and test."""
    shipped_runs = (shipped or {}).get('runs', [])
    ablations = by_key(
        [dict(r, row=(r['variant'], r['ablation'])) for r in data['runs']],
        'row')
    groups = {}
    for (variant, name), runs in sorted(ablations.items()):
        seeds = {r['seed'] for r in runs}
        base = [
            r for r in shipped_runs
            if r['variant'] == variant and r['seed'] in seeds
        ]
        if base:
            groups.setdefault(('as is', variant), base)
        groups[(name, variant)] = runs
    lines = [
        f"Measured on {data['date']} (`{data['benchmark']}`), the protocol "
        f"above at {data['args']['epochs']} epochs; each row adds its "
        'options to the config of the table above (rows "as is": that config '
        'on the same seeds, from that table).', ''
    ] + _note(data) + [
        '| ablation | options | method | seeds | best val mAP (%) | '
        'test bbox mAP (%) | best val epoch |', '|---|---|---|---|---|---|---|'
    ]
    for (name, variant), runs in groups.items():
        extra = runs[0].get('ablation_options', [])
        options = f"`{' '.join(extra)}`" if extra else 'none'
        lines.append(
            f'| {name} | {options} | {_det_name(variant, data)} | '
            f'{seeds_of(runs)} | {mean_std([_best_val(r) for r in runs])} | '
            f'{mean_std([r["mAP"] for r in runs])} | '
            f'{", ".join(str(r["best_epoch"] or "last") for r in runs)} |')
    return '\n'.join(lines)


def render_train_step_cost(data: dict) -> str:
    """Train-step time and peak memory per variant, as ratios to the
    baseline and to the two-view floor; inference times of the export."""
    meta = data['meta']
    mem = meta['memory_key']
    mem_name = 'CUDA max allocated' if 'cuda' in mem else 'peak RSS'
    commit = meta['git_commit']
    dirty = ' plus uncommitted changes' if commit.endswith('+dirty') else ''
    note = f" {meta['note']}" if meta.get('note') else ''
    lines = [
        f"Measured on {meta['date']} at commit `{commit[:12]}`{dirty} "
        f"({meta['machine']}, torch {meta['torch']}, {meta['threads']} "
        f"threads, {meta['device']}; median of {meta['rounds']} rounds "
        f"after {meta['warmup']} warm-up).{note} cls: {meta['cls']}; det: "
        f"{meta['det']}.", '',
        f'| model | variant | median (ms) | × baseline | × floor | '
        f'{mem_name} (MiB) | memory × baseline | memory × floor | GFLOP | '
        'GFLOP × floor |', '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for group in ('cls', 'det'):
        rows = data.get(group, {})
        for name, row in rows.items():
            cells = [f"{row['median_ms']:.1f}"]
            cells += [
                _cost_ratio(rows, name, ref, 'median_ms')
                for ref in ('baseline', 'floor')
            ]
            cells += [f'{row[mem]:.0f}']
            cells += [
                _cost_ratio(rows, name, ref, mem)
                for ref in ('baseline', 'floor')
            ]
            cells += [
                f"{row['gflop']:.2f}",
                _cost_ratio(rows, name, 'floor', 'gflop')
            ]
            lines.append(f"| {group} | {row.get('label', name)} | " +
                         ' | '.join(cells) + ' |')
    inference = data.get('inference', {})
    if inference:
        lines += [
            '', 'Inference (`test_step`, median ms): plain upstream model / '
            '`export_plain.py` model / wrapper `predict()`:', ''
        ]
        for group, row in inference.items():
            times = ' / '.join(f"{row[k]['median_ms']:.1f}"
                               for k in ('upstream', 'export', 'wrapper'))
            same = 'identical' if row['identical_outputs'] else 'DIFFERENT'
            lines.append(f'- {group}: {times} (export and wrapper outputs '
                         f'{same})')
    return '\n'.join(lines)


def _cost_ratio(rows: dict, name: str, ref: str, key: str) -> str:
    return f'{rows[name][key] / rows[ref][key]:.2f}' if ref in rows else '-'


RENDERERS: Dict[str, Callable[[dict], str]] = {
    'cls_accuracy': render_cls_accuracy,
    'cls_ablations': render_cls_ablations,
    'semi_accuracy_4ep': render_semi_accuracy,
    'kd_accuracy_4ep': render_kd_accuracy,
    'semi_accuracy': render_method_accuracy,
    'kd_accuracy': render_method_accuracy,
    'cls_calibration': render_cls_calibration,
    'cls_calibration_56px': render_cls_calibration,
    'det_accuracy': render_det_accuracy,
    'det_dense_accuracy': render_det_dense_accuracy,
    'det_dense_accuracy_24ep': render_det_dense_accuracy,
    'det_dense_both_heads_24ep': render_det_dense_accuracy,
    'det_dense_both_heads_ablations_24ep': render_det_dense_ablations,
    'train_step_cost': render_train_step_cost,
    'det_mosaic_accuracy': render_det_dense_accuracy,
    'det_pretrained_backbone': render_det_pretrained_backbone,
    'det_mosaic_weight_screen': render_det_dense_ablations,
}

# further results a table shows: renderer keyword -> results name
INPUTS = {
    'cls_ablations':
    dict(shipped='cls_accuracy'),
    'det_dense_both_heads_ablations_24ep':
    dict(shipped='det_dense_both_heads_24ep'),
    'det_mosaic_weight_screen':
    dict(shipped='det_mosaic_accuracy')
}


def _paired(runs: List[dict], a: str, b: str, key: str,
            metric: str) -> List[float]:
    """Same-seed differences ``a - b`` of ``metric`` between the runs whose
    ``key`` is ``a`` and ``b``."""
    groups = by_key(runs, key)
    other = {r['seed']: r[metric] for r in groups.get(b, [])}
    return [
        r[metric] - other[r['seed']] for r in groups.get(a, [])
        if r['seed'] in other
    ]


def _gain(diffs: List[float], higher_is_better: bool = True) -> str:
    """``'+0.72 ± 0.39: a gain'``; a mean within one std is no gain, and
    fewer than 3 seeds give no verdict. For a metric where lower is better
    (ECE) a positive difference is a loss."""
    if not diffs:
        return 'no paired run'
    mean = statistics.mean(diffs)
    text = mean_std(diffs)
    text = text if text.startswith('-') else '+' + text
    if len(diffs) < 3:  # no spread worth judging it against
        seeds = 'one seed' if len(diffs) == 1 else f'{len(diffs)} seeds'
        return f'{text}: {seeds}, no verdict yet'
    if abs(mean) <= statistics.stdev(diffs):
        return f'{text}: within the spread'
    better = (mean > 0) == higher_is_better
    return f"{text}: {'a gain' if better else 'a loss'}"


def _metric(runs: List[dict], key: str, variant: str, metric: str) -> str:
    values = [r[metric] for r in runs if r[key] == variant]
    return mean_std(values) if values else 'not run'


SUMMARY_HEADER = [
    '| setting | metric (seeds) | baseline | CDS | CDS − baseline, '
    'same seed | study |', '|---|---|---|---|---|---|'
]


def _summary_line(setting: str, metric: str, runs: List[dict], key: str,
                  base: str, cds: str, value: str, study: str) -> str:
    seeds = sorted({r['seed'] for r in runs if r[key] == cds})
    return (f'| {setting} | {metric} ({len(seeds)}) | '
            f'{_metric(runs, key, base, value)} | '
            f'{_metric(runs, key, cds, value)} | '
            f'{_gain(_paired(runs, cds, base, key, value))} | {study} |')


def summary_classification(cls: dict, cal: dict) -> str:
    """The README's classification rows: converged baseline, DSN, CDS; and
    test ECE after temperature scaling, baseline against CDS on the same
    seeds (the runs of a ``cls_calibration.py`` file that are no
    ablation's)."""
    runs, args = cls['runs'], cls['args']
    dsn = _metric(runs, 'mode', 'dsn', 'top1')
    cal_runs = [r for r in cal['runs'] if not r.get('variant')]
    before = {
        m: _metric(cal_runs, 'method', m, 'test_ece_before')
        for m in ('off', 'cds')
    }
    seeds = sorted({r['seed'] for r in cal_runs if r['method'] == 'cds'})
    after = _paired(cal_runs, 'cds', 'off', 'method', 'test_ece_after')
    return '\n'.join(SUMMARY_HEADER + [
        _summary_line(
            f'Fashion-MNIST, ResNet-18 (1/4 width), {args["epochs"]} epochs '
            f'to convergence (DSN: {dsn})', 'test top-1 %', runs, 'mode',
            'off', 'cds', 'top1', 'Classification'),
        f'| calibration: one softmax temperature fitted on val '
        f'(`tools/calibrate_temperature.py`; before it, baseline '
        f'{before["off"]}, CDS {before["cds"]}); the same recipe at 56 px '
        "(the pretrained-backbone study's pretraining runs) | test "
        f'ECE % after ({len(seeds)}) | '
        f'{_metric(cal_runs, "method", "off", "test_ece_after")} | '
        f'{_metric(cal_runs, "method", "cds", "test_ece_after")} | '
        f'{_gain(after, higher_is_better=False)} | Calibration: temperature '
        'scaling |'
    ])


def complete_variants(data: dict) -> Dict[str, List[dict]]:
    """The runs of each CDS variant of a detection study that ran on every
    seed the baseline ran."""
    groups = by_key(data['runs'], 'variant')
    seeds = {r['seed'] for r in groups.pop('off', [])}
    return {
        v: runs
        for v, runs in groups.items()
        if seeds and seeds <= {r['seed']
                               for r in runs}
    }


def summary_detection(mosaic: dict, pretrained: dict) -> str:
    """The README's detection rows, one per route: CDS while the detector
    trains (of the multi-class study's variants run on every seed, the one
    with the best mean best-val mAP over the seeds its weight screen did not
    choose on: never chosen on test), and the CDS-pretrained backbone
    against the CE-pretrained one (Faster R-CNN)."""
    runs, args = mosaic['runs'], mosaic['args']
    frcnn = [r for r in pretrained['runs'] if r['detector'] == 'faster-rcnn']
    full = complete_variants(mosaic)
    choices = mosaic.get('weight_choice', {})

    def val_unchosen(variant):
        # a screen's pick is the best of its weights on val on its seed:
        # that seed's val flatters it, so the other seeds decide
        seed = choices.get(variant, {}).get('seed')
        runs = [r for r in full[variant] if r['seed'] != seed]
        return statistics.mean(map(_best_val, runs or full[variant]))

    if full:
        variant = max(full, key=val_unchosen)
        name = DET_NAMES[variant].split(' (')[0]
        choice = mosaic.get('weight_choice', {}).get(variant)
        if choice:
            name += f" at the screen's {choice['ablation']}"
        training = _summary_line(
            f'training-time {name} (the best on val of the {len(full)} '
            'variant(s) run on every seed, on the seeds no weight choice '
            'saw): tiny Faster R-CNN, Fashion-MNIST '
            f'mosaic (10 classes), {args["epochs"]} epochs', 'test bbox mAP %',
            runs, 'variant', 'off', variant, 'mAP', 'Multi-class detection')
    else:
        training = ('| training-time CDS on the Fashion-MNIST mosaic | not '
                    'run yet | | | | Multi-class detection |')
    return '\n'.join(SUMMARY_HEADER + [
        training,
        _summary_line(
            "CDS-pretrained backbone (the paper's route): tiny Faster R-CNN "
            'on the Fashion-MNIST mosaic (10 classes), its ResNet-18 '
            'pretrained on Fashion-MNIST; baseline: CE-pretrained',
            'test bbox mAP %', frcnn, 'init', 'ce', 'cds', 'mAP',
            'Pretrained backbone')
    ]) + _beyond_two_std(runs, full)


def _beyond_two_std(runs: List[dict], full: Dict[str, List[dict]]) -> str:
    """The sentence under the detection rows: which training-time variants
    gain more than two stds of their paired differences (test mAP) over the
    baseline, or that none does and where a detection user goes then."""
    clear, best = [], None
    for variant in sorted(full):
        diffs = _paired(runs, variant, 'off', 'variant', 'mAP')
        if len(diffs) < 2:
            continue
        mean, std = statistics.mean(diffs), statistics.stdev(diffs)
        name = DET_NAMES[variant].split(' (')[0]
        if mean > 2 * std:
            clear.append(f'{name} (+{mean:.2f}, 2 std {2 * std:.2f})')
        elif best is None or mean > best[1]:
            best = (name, mean, std)
    if clear:
        return ('\n\nTraining-time CDS beyond two stds of its paired '
                'differences over the baseline: ' + ', '.join(clear) + '.')
    if best is None:
        return ''
    name, mean, std = best
    return (
        '\n\nNo training-time variant gains more than two stds of its '
        f'paired differences over the baseline (the largest: {name}, '
        f'{mean:+.2f} against 2 std {2 * std:.2f}). The paper\'s detection '
        'route is the CDS-pretrained backbone (`configs/cds_detection/'
        '*_cds-pretrained_*`, paper Table 4: COCO box AP 37.4 -> 38.3 for '
        'Faster R-CNN); at this scale it has not beaten a CE-pretrained '
        'backbone (the row above).')


def _last_epoch_count(runs: List[dict], epochs: int) -> str:
    """``'2 of 9 runs'`` whose best val epoch was the last one."""
    last = sum(r['best_epoch'] == epochs for r in runs)
    return f'{last} of {len(runs)} runs'


def summary_semi(semi: dict) -> str:
    """The README's semi-supervised row: semi-supervised CDS against
    supervised-only on the same batches; CDS on the labelled images alone
    in the setting, so the unlabelled images' share shows."""
    runs, args = semi['runs'], semi['args']
    labelled = _metric(runs, 'method', 'cds_labelled', 'top1')
    return '\n'.join(SUMMARY_HEADER + [
        _summary_line(
            f'Fashion-MNIST, {args["label_fraction"]:.0%} of the labels, '
            f'ResNet-18 (1/4 width), {args["epochs"]} epochs '
            f'({_last_epoch_count(runs, args["epochs"])} best on the last); '
            'baseline: supervised-only on the same batches (CDS on the '
            f'labelled only: {labelled})', 'test top-1 %', runs, 'method',
            'sup', 'semi_cds', 'top1', 'Semi-supervised at convergence')
    ])


def summary_distillation(kd: dict) -> str:
    """The README's distillation row: distilled CDS against plain KD from
    the same teacher; the students without a teacher in the setting, so
    the teacher's share shows."""
    runs, args = kd['runs'], kd['args']
    student, cds_student = (
        _metric(runs, 'method', m, 'top1') for m in ('student', 'cds_student'))
    teacher = kd['teacher']
    return '\n'.join(SUMMARY_HEADER + [
        _summary_line(
            'Fashion-MNIST, ResNet-18 (1/4 width), a CDS teacher '
            f'({teacher["top1"]:.2f}, trained on '
            f'{teacher["train_samples"]:,} images) -> a student on '
            f'{args["train_samples"]:,}, {args["epochs"]} epochs '
            f'({_last_epoch_count(runs, args["epochs"])} best on the last); '
            'baseline: plain KD (no teacher: plain student '
            f'{student}, CDS student {cds_student})', 'test top-1 %', runs,
            'method', 'kd', 'distilled_cds', 'top1',
            'Distillation at convergence')
    ])


# the README's summary tables: block name -> (renderer, keyword -> results)
SUMMARIES = {
    'summary_classification':
    (summary_classification,
     dict(cls='cls_accuracy', cal='cls_calibration_56px')),
    'summary_detection':
    (summary_detection,
     dict(mosaic='det_mosaic_accuracy', pretrained='det_pretrained_backbone')),
    'summary_semi': (summary_semi, dict(semi='semi_accuracy')),
    'summary_distillation': (summary_distillation, dict(kd='kd_accuracy')),
}


def load(name: str, results_dir: str = RESULTS) -> dict:
    with open(osp.join(results_dir, f'{name}.json')) as f:
        return json.load(f)


def render_readme(text: str, results_dir: str = RESULTS) -> str:
    """``text`` with every generated block re-rendered from its JSON.

    Raises:
        ValueError: A block names no known table.
    """

    def sub(m):
        name = m.group('name')
        if name in SUMMARIES:
            render, inputs = SUMMARIES[name]
            body = render(**{
                key: load(other, results_dir)
                for key, other in inputs.items()
            })
            return f'{m.group(1)}{body}\n{m.group(4)}'
        if name not in RENDERERS:
            raise ValueError(f'README block {name!r}: no renderer; known: '
                             f'{sorted(RENDERERS) + sorted(SUMMARIES)}')
        extra = {
            key: load(other, results_dir)
            for key, other in INPUTS.get(name, {}).items()
        }
        body = RENDERERS[name](load(name, results_dir), **extra)
        return f'{m.group(1)}{body}\n{m.group(4)}'

    return BLOCK_RE.sub(sub, text)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--check',
        action='store_true',
        help='compare only; exit 1 if a README differs')
    parser.add_argument(
        '--readme',
        nargs='+',
        default=[README, BENCHMARKS_README, *METHOD_READMES],
        help='the READMEs to render')
    parser.add_argument('--results-dir', default=RESULTS)
    args = parser.parse_args(argv)
    stale = []
    for readme in args.readme:
        with open(readme) as f:
            text = f.read()
        new = render_readme(text, args.results_dir)
        names = ', '.join(m.group('name') for m in BLOCK_RE.finditer(text))
        if new == text:
            print(f'{readme} matches the JSON ({names})')
        elif args.check:
            stale.append(readme)
        else:
            with open(readme, 'w') as f:
                f.write(new)
            print(f'rendered {names} into {readme}')
    if stale:
        print(
            f'{", ".join(stale)} differ from {args.results_dir}: run '
            'python benchmarks/make_readme_tables.py',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
