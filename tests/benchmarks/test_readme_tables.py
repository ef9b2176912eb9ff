"""The README's results tables are the committed JSON's (no training)."""
import copy
import json
import os.path as osp
import shutil

import pytest
from cds_test_utils import REPO_ROOT, load_tool

tables = load_tool(osp.join(REPO_ROOT, 'benchmarks', 'make_readme_tables.py'))


def cls_data(runs, missing=()):
    return dict(
        date='2026-12-02',
        git_commit='0123456789abcdef',
        benchmark='benchmarks/cls_accuracy_seeds.py',
        args=dict(epochs=15, train_samples=10000),
        runs=runs,
        missing=list(missing))


def cls_run(mode, seed, top1, best_epoch=12):
    return dict(
        mode=mode,
        seed=seed,
        top1=top1,
        ece=1.0 + seed,
        best_val_top1=top1 + 0.5,
        best_epoch=best_epoch)


def block_names(path):
    with open(path) as f:
        return [m.group('name') for m in tables.BLOCK_RE.finditer(f.read())]


def test_readme_matches_committed_json(capsys):
    # the README: the summaries; benchmarks/README.md: every study's table
    assert sorted(block_names(tables.README)) == sorted(tables.SUMMARIES)
    assert sorted(block_names(tables.BENCHMARKS_README)) == sorted(
        tables.RENDERERS)
    for readme in tables.METHOD_READMES:  # each shows a generated table
        assert block_names(readme), readme
    assert tables.main(['--check']) == 0, capsys.readouterr().err


def test_readme_is_short_and_keeps_the_two_commands():
    with open(tables.README) as f:
        text = f.read()
    assert len(text.splitlines()) <= 250
    # .ci/run runs the same test command
    for command in ('bash tools/demo.sh', 'bash tools/run_tests.sh'):
        assert command in text, command


def test_summary_says_whether_the_gain_is_within_the_spread():
    runs = [cls_run('off', s, 90.0) for s in (0, 1, 2)]
    runs += [
        cls_run('cds', 0, 91.0),
        cls_run('cds', 1, 90.5),
        cls_run('cds', 2, 90.75)
    ]
    cal = [
        dict(method=m, seed=s, test_ece_before=b, test_ece_after=a)
        for m, s, b, a in [('off', 1, 1.5, 1.0), ('off', 2, 1.75, 1.25),
                           ('cds', 1, 2.25, 1.5), ('cds', 2, 2.5, 2.0)]
    ] + [
        dict(
            method='cds',
            seed=3,
            variant='half',
            test_ece_before=9.0,
            test_ece_after=9.0)
    ]
    text = tables.summary_classification(cls_data(runs), dict(runs=cal))
    row = text.splitlines()[2]
    # CDS - baseline per seed +1.0, +0.5, +0.75: mean 0.75 > std 0.25
    assert '| 90.00 ± 0.00 | 90.75 ± 0.25 | +0.75 ± 0.25: a gain |' in row
    assert 'test top-1 % (3)' in row
    # the ablation's run is left out; two seeds give no verdict
    row = text.splitlines()[3]
    assert 'before it, baseline 1.62 ± 0.18, CDS 2.38 ± 0.18)' in row
    assert '| test ECE % after (2) | 1.12 ± 0.18 | 1.75 ± 0.35 | ' \
        '+0.62 ± 0.18: 2 seeds, no verdict yet |' in row
    # ECE: lower is better, so CDS's higher ECE on every seed is a loss
    assert tables._gain([0.5, 0.75, 0.25],
                        higher_is_better=False) == '+0.50 ± 0.25: a loss'
    assert tables._gain([0.5, -0.5, 0.0]) == '+0.00 ± 0.50: within the spread'
    assert tables._gain([-2.0, -1.0, -1.5]) == '-1.50 ± 0.50: a loss'
    assert tables._gain([-2.0,
                         -1.0]) == '-1.50 ± 0.71: 2 seeds, no verdict yet'
    assert tables._gain([]) == 'no paired run'
    assert tables._gain([-0.8]) == '-0.80: one seed, no verdict yet'


def test_detection_summary_takes_the_variant_best_on_val():
    """Of the variants run on every baseline seed, the best mean best-val
    mAP, not the best test mAP, over the seeds no weight screen chose on; a
    variant short of seeds is not a candidate."""
    data = dict(
        args=dict(epochs=24),
        shipped_variant='ins',
        weight_choice={
            'img+ins':
            dict(
                ablation='w0.01',
                seed=0,
                options=['model.cds_head.loss_weight=0.01'],
                val_mAP=63.0),
            'ins':
            dict(ablation='w0.1', seed=0, options=[], val_mAP=70.0)
        },
        runs=[
            det_run('off', 0, 70.0),
            det_run('off', 1, 70.0),
            # its screen's pick: best of its weights on seed 0's val
            det_run('ins', 0, 74.0, val=(60.0, 70.0)),
            det_run('ins', 1, 74.0, val=(60.0, 61.0)),
            det_run('img+ins', 0, 71.0, val=(60.0, 63.0)),
            det_run('img+ins', 1, 72.0, val=(60.0, 63.0)),
            det_run('img', 0, 90.0, val=(60.0, 99.0))
        ])
    pretrained = dict(runs=[
        pre_run('faster-rcnn', 'ce', 0, 50.0),
        pre_run('faster-rcnn', 'cds', 0, 49.0),
        pre_run('retinanet', 'cds', 0, 80.0)
    ])
    rows = tables.summary_detection(data, pretrained).splitlines()[2:]
    assert rows[0].startswith(
        "| training-time CDS image + instance at the screen's w0.01 (the "
        'best on val of the 2 variant(s) run on every seed, on the seeds no '
        'weight choice saw):'), rows[0]
    assert '| 70.00 ± 0.00 | 71.50 ± 0.71 | +1.50 ± 0.71:' in rows[0]
    # the paper's route: CDS- against CE-pretrained, Faster R-CNN only
    assert rows[1].startswith("| CDS-pretrained backbone (the paper's route)")
    assert '| 50.00 | 49.00 | -1.00: one seed, no verdict yet |' in rows[1]
    # no variant on every seed yet: said so
    data['runs'] = data['runs'][:2] + data['runs'][-1:]
    rows = tables.summary_detection(data, pretrained).splitlines()[2:]
    assert 'not run yet' in rows[0]


def pre_run(detector, init, seed, mAP, top1=None):
    run = dict(
        detector=detector,
        init=init,
        seed=seed,
        mAP=mAP,
        mAP50=mAP + 20,
        best_epoch=20,
        val_mAP=[dict(epoch=1, mAP=mAP - 5),
                 dict(epoch=2, mAP=mAP + 1)])
    if top1 is not None:
        run['pretrain_top1'] = top1
    return run


def test_pretrained_backbone_table_pairs_the_inits_by_seed():
    data = dict(
        date='2026-12-07',
        git_commit='0123456789abcdef+dirty',
        benchmark='benchmarks/det_pretrained_backbone.py',
        protocol='P',
        args=dict(epochs=24),
        runs=[
            pre_run('faster-rcnn', 'scratch', 0, 40.0),
            pre_run('faster-rcnn', 'ce', 0, 45.0, top1=90.0),
            pre_run('faster-rcnn', 'cds', 0, 46.5, top1=91.0),
            pre_run('faster-rcnn', 'scratch', 1, 42.0),
            pre_run('faster-rcnn', 'ce', 1, 44.0, top1=89.0),
        ],
        missing=[dict(detector='faster-rcnn', init='cds', seed=1)])
    text = tables.render_det_pretrained_backbone(data)
    assert 'plus uncommitted changes' in text
    rows = {line.split(' | ')[0]: line for line in text.splitlines()}
    assert '| 89.50 ± 0.71 | 44.50 ± 0.71 |' in rows['| CE-pretrained']
    assert rows['| CDS-pretrained'] == \
        '| CDS-pretrained | 0 | 91.00 | 46.50 | 66.50 | 46.50 | 47.50 | 20 |'
    assert rows['| from scratch'].startswith('| from scratch | 0, 1 | - |')
    # cds - ce on seed 0 only; ce - scratch on both seeds
    assert '| 0 | +1.50 | 1.50 |' in \
        rows['| CDS-pretrained − CE-pretrained']
    assert '| 0, 1 | +5.00, +2.00 | 3.50 ± 2.12 |' in \
        rows['| CE-pretrained − from scratch']
    assert 'faster-rcnn CDS-pretrained seed 1.' in text


def test_check_fails_when_a_number_changes(tmp_path):
    results = tmp_path / 'results'
    shutil.copytree(tables.RESULTS, results)
    path = results / 'det_accuracy.json'
    data = json.loads(path.read_text())
    data['runs'][0]['bbox_mAP'] += 0.01
    path.write_text(json.dumps(data))
    assert tables.main(['--check', '--results-dir', str(results)]) == 1


def test_cls_table_means_stds_and_paired_differences():
    data = cls_data([
        cls_run('off', 0, 88.0),
        cls_run('cds', 0, 90.0),
        cls_run('off', 1, 90.0),
        cls_run('cds', 1, 93.0)
    ],
                    missing=[dict(mode='dsn', seed=0)])
    text = tables.render_cls_accuracy(data)
    # baseline 88, 90 -> 89 ± sqrt(2); CDS - baseline per seed +2, +3
    assert '| baseline (`off`) | 0, 1 | 89.00 ± 1.41 |' in text
    assert '| 88.00, 90.00 | 89.50 ± 1.41 | 12, 12 |' in text
    assert '| CDS − baseline | 0, 1 | +2.00, +3.00 | 2.50 ± 0.71 |' in text
    assert 'CDS − DSN' not in text  # no DSN run to pair with
    assert 'Not run yet (the benchmark resumes them): DSN seed 0.' in text


def test_kd_sentence_counts_the_seeds_won():
    data = tables.load('kd_accuracy_4ep')
    for r in data['runs']:
        if r['variant'] == 'kd':
            r['top1'] = 0.0
    text = tables.render_kd_accuracy(data)
    seeds = sorted(r['seed'] for r in data['runs'] if r['variant'] == 'cds+kd')
    assert (f'beat plain KD on {len(seeds)} of {len(seeds)} seeds (seeds '
            f'{", ".join(map(str, seeds))})') in text


def method_data(runs, **extra):
    """A results file of ``semi_kd_accuracy_seeds.py`` (``method`` runs)."""
    return dict(
        date='2026-12-07',
        git_commit='0123456789abcdef',
        benchmark='benchmarks/semi_kd_accuracy_seeds.py semi',
        args=dict(epochs=15, train_samples=10000, label_fraction=0.2),
        runs=[
            dict(
                method=m,
                seed=s,
                top1=t,
                ece=2.0,
                best_val_top1=t + 1,
                best_epoch=14) for m, s, t in runs
        ],
        **extra)


def test_method_table_orders_methods_and_pairs_them_by_seed():
    data = method_data([('semi_cds', 0, 82.0), ('sup', 0, 80.0),
                        ('semi_cds', 1, 82.5), ('sup', 1, 81.0),
                        ('semi_cds', 2, 84.0), ('sup', 2, 82.0),
                        ('cds_labelled', 0, 81.0)],
                       missing=[dict(method='cds_labelled', seed=1)])
    text = tables.render_method_accuracy(data)
    rows = [ln for ln in text.splitlines() if ln.startswith('| ')]
    # the studies' order, not the order the runs finished in
    assert rows[1].startswith('| supervised-only')
    assert rows[2].startswith('| semi-supervised CDS')
    assert '| 0, 1, 2 | 82.83 ± 1.04 | 2.00 ± 0.00 | 82.00, 82.50, 84.00 |' \
        ' 83.83 ± 1.04 | 14, 14, 14 |' in rows[2]
    assert ('| semi-supervised CDS (+ SimCLR on the unlabelled) − '
            'supervised-only (CE on the labelled) | 0, 1, 2 | '
            '+2.00, +1.50, +2.00 | 1.83 ± 0.29 |') in text
    # seed 0 alone pairs CDS on the labelled with the others
    assert ('(`unlabelled_weight=0`) − supervised-only (CE on the labelled) '
            '| 0 | +1.00 | 1.00 |') in text
    assert '20% of them labelled' in text
    assert 'Not run yet (the benchmark resumes them): cds_labelled seed 1.' \
        in text
    assert 'Teacher' not in text


def test_semi_summary_pairs_semi_cds_with_sup_and_counts_last_epochs():
    data = method_data([('sup', 0, 80.0), ('semi_cds', 0, 82.0),
                        ('sup', 1, 81.0), ('semi_cds', 1, 82.5),
                        ('cds_labelled', 0, 81.0)])
    data['runs'][1]['best_epoch'] = 15  # semi_cds seed 0 peaked last
    row = tables.summary_semi(data).splitlines()[2]
    assert '20% of the labels' in row
    assert '15 epochs (1 of 5 runs best on the last)' in row
    assert 'CDS on the labelled only: 81.00)' in row
    assert '| test top-1 % (2) | 80.50 ± 0.71 | 82.25 ± 0.35 | ' \
        '+1.75 ± 0.35: 2 seeds, no verdict yet |' in row


def test_distillation_summary_pairs_distilled_cds_with_kd():
    data = method_data([('student', 0, 88.0), ('cds_student', 0, 89.0),
                        ('kd', 0, 89.5), ('distilled_cds', 0, 90.5),
                        ('kd', 1, 90.0), ('distilled_cds', 1, 90.25)],
                       teacher=dict(seed=0, top1=91.25, train_samples=55000))
    data['args'].pop('label_fraction')
    data['runs'][3]['best_epoch'] = 15
    row = tables.summary_distillation(data).splitlines()[2]
    assert 'CDS teacher (91.25, trained on 55,000 images) -> a student on ' \
        '10,000, 15 epochs' in row
    assert '15 epochs (1 of 6 runs best on the last)' in row
    assert 'plain student 88.00, CDS student 89.00)' in row
    # distilled CDS against KD from the same teacher, not the CDS student
    assert '| test top-1 % (2) | 89.75 ± 0.35 | 90.38 ± 0.18 | ' \
        '+0.62 ± 0.53: 2 seeds, no verdict yet |' in row


def test_method_table_names_the_teacher():
    data = method_data([('kd', 0, 90.0), ('distilled_cds', 0, 90.5)],
                       teacher=dict(seed=0, top1=91.25, config='t.py'))
    data['args'].pop('label_fraction')
    text = tables.render_method_accuracy(data)
    assert 'Teacher: test top-1 91.25 (seed 0, `t.py`).' in text
    data['teacher'].update(train_samples=55000, epochs=5)
    assert 'Teacher: test top-1 91.25 (seed 0, `t.py`, 55,000 training ' \
        'images, 5 epochs).' in tables.render_method_accuracy(data)
    assert 'labelled' not in text.splitlines()[0]
    assert '| +0.50 | 0.50 |' in text


def test_calibration_table_pairs_cds_with_the_baseline_before_and_after():

    def run(method, seed, before, after, variant=None):
        r = dict(
            method=method,
            seed=seed,
            temperature=1.1,
            test_ece_before=before,
            test_ece_after=after,
            test_nll_before=0.3,
            test_nll_after=0.29,
            top1_after=90.0)
        return dict(r, variant=variant) if variant else r

    data = dict(
        date='2026-12-08',
        benchmark='benchmarks/cls_calibration.py',
        source='r.json',
        protocol='T on val',
        runs=[
            run('cds', 1, 2.5, 1.0),
            run('off', 0, 1.5, 1.25),
            run('off', 1, 1.75, 0.75),
            run('cds', 0, 2.25, 1.0),
            run('cds', 0, 3.0, 2.0, variant='half')
        ])
    text = tables.render_cls_calibration(data)
    rows = [ln for ln in text.splitlines() if ln.startswith('| ')]
    assert rows[1] == ('| CDS (`cds`) | 0, 1 | 1.10 ± 0.00 | 2.38 ± 0.18 | '
                       '1.00 ± 0.00 | 0.3000 ± 0.0000 | 0.2900 ± 0.0000 | '
                       '90.00 ± 0.00 |')
    assert rows[3].startswith('| half CDS (`cds`) | 0 | 1.10 | 3.00 |')
    # the variant run is not paired with the baseline
    assert '| CDS − baseline | 0, 1 | +0.75, +0.75 | 0.75 ± 0.00 |' in text
    assert '| CDS − baseline | 0, 1 | -0.25, +0.25 | 0.00 ± 0.35 |' in text
    assert text.index('before scaling') < text.index('after scaling')


def test_unknown_block_is_an_error(tmp_path):
    text = '<!-- generated: nope -->\nx\n<!-- end generated: nope -->\n'
    with pytest.raises(ValueError, match="'nope'"):
        tables.render_readme(text, str(tmp_path))


def test_rendering_leaves_text_outside_blocks_alone():
    data = copy.deepcopy(tables.load('det_accuracy'))
    body = tables.render_det_accuracy(data)
    text = ('before\n<!-- generated: det_accuracy -->\nold\n'
            '<!-- end generated: det_accuracy -->\nafter\n')
    assert tables.render_readme(text) == (
        'before\n<!-- generated: det_accuracy -->\n' + body +
        '\n<!-- end generated: det_accuracy -->\nafter\n')


def test_ablation_rows_keep_variant_and_mode_apart():
    runs = [
        dict(
            cls_run('cds', s, 90.0 + s),
            variant='half',
            extra_options=['model.view2_scale=0.5']) for s in (0, 1)
    ] + [dict(cls_run('off', 0, 88.0), variant='half', extra_options=[])]
    text = tables.render_cls_ablations(cls_data(runs))
    rows = [line for line in text.splitlines() if line.startswith('| half')]
    assert rows == [
        '| half | `model.view2_scale=0.5` | CDS (`cds`) | 0, 1 | '
        '91.00 ± 0.71 | 90.50 ± 0.71 | 1.50 ± 0.71 | 12, 12 |',
        '| half | none | baseline (`off`) | 0 | 88.50 | 88.00 | 1.00 | 12 |'
    ]


def det_run(variant, seed, mAP, val=(10.0, 20.0)):
    return dict(
        variant=variant,
        seed=seed,
        mAP=mAP,
        mAP50=2 * mAP,
        best_epoch=len(val),
        val_mAP=[dict(epoch=e + 1, mAP=m) for e, m in enumerate(val)])


def test_detection_summary_says_whether_a_gain_is_beyond_two_stds():
    """Under the rows: the training-time variants whose mean paired gain is
    above two stds of the differences; when none is, the largest gain and
    the pretrained-backbone route."""
    pretrained = dict(runs=[pre_run('faster-rcnn', 'ce', 0, 50.0)])
    runs = [det_run('off', s, 70.0) for s in (0, 1, 2)]
    # ins: +1, +2, +3 (mean 2 < 2 std 2); img+ins: +1, +1.5, +2 (1.5 > 1)
    runs += [det_run('ins', s, 71.0 + s) for s in (0, 1, 2)]
    both = [det_run('img+ins', s, 71.0 + s / 2) for s in (0, 1, 2)]
    text = tables.summary_detection(det_study(runs + both), pretrained)
    assert text.endswith('Training-time CDS beyond two stds of its paired '
                         'differences over the baseline: CDS image + '
                         'instance (+1.50, 2 std 1.00).'), text
    text = tables.summary_detection(det_study(runs), pretrained)
    assert ('No training-time variant gains more than two stds of its '
            'paired differences over the baseline (the largest: CDS '
            'instance-level, +2.00 against 2 std 2.00).') in text
    assert 'CDS-pretrained backbone' in text.split('\n\n')[-1]


def det_study(runs, **fields):
    """A detection study's results (``det_accuracy_seeds.py``)."""
    return dict(
        dict(
            date='2026-12-07',
            git_commit='0123456789abcdef',
            benchmark='benchmarks/det_accuracy_seeds.py',
            protocol='P',
            args=dict(epochs=24),
            shipped_variant='img+ins',
            runs=runs), **fields)


def test_dense_det_table_pairs_variants_by_seed():
    data = det_study(
        git_commit='0123456789abcdef+dirty',
        args=dict(epochs=12),
        runs=[
            det_run('off', 0, 20.0),
            det_run('img+ins', 0, 23.0, val=(30.0, 25.0)),
            det_run('off', 1, 22.0),
            det_run('img+ins', 1, 24.0),
            det_run('img', 2, 30.0)
        ],
        missing=[dict(variant='img', seed=0)])
    text = tables.render_det_dense_accuracy(data)
    assert 'plus uncommitted changes' in text
    # best val mAP is the curve's maximum: 30 (seed 0) and 20 (seed 1)
    assert (
        '| CDS image + instance (the config as it is) | 0, 1 | 23.50 ± 0.71 | '
        '47.00 ± 1.41 | 23.00, 24.00 | 25.00 ± 7.07 | 2, 2 |') in text
    assert ('| CDS image + instance − baseline | 0, 1 | +3.00, +2.00 | '
            '2.50 ± 0.71 |') in text
    # image-level ran on seed 2 only, where no baseline ran: no pair
    assert 'CDS image-level − baseline' not in text
    assert 'Not run yet (the benchmark resumes them): CDS image-level ' \
        'seed 0.' in text


def test_dense_det_table_labels_the_config_as_it_is_shipped():
    data = det_study(
        shipped_variant='ins',
        note='Made with the config of commit abc.',
        runs=[
            det_run('off', 0, 20.0),
            det_run('ins', 0, 21.0),
            det_run('img+ins', 0, 19.0)
        ])
    text = tables.render_det_dense_accuracy(data)
    lines = text.splitlines()
    assert lines[2] == 'Made with the config of commit abc.'
    rows = [line.split(' | ')[0] for line in lines if line.startswith('| ')]
    assert rows[1:4] == [
        '| baseline (`model.mode=off`)',
        '| CDS instance-level (the config as it is)', '| CDS image + instance'
    ]
    assert '| CDS instance-level − baseline | 0 | +1.00 |' in text
    assert '| CDS image + instance − CDS instance-level | 0 | -2.00 |' in text


def test_ablation_table_starts_with_the_shipped_runs_it_compares_to():
    ablation = [
        dict(
            cls_run('cds', 0, 89.0),
            variant='every2',
            extra_options=['model.cds_interval=2'])
    ] + [
        dict(
            cls_run('cds', s, 91.0 + s),
            variant='w0.3',
            extra_options=['model.cds_head.loss_weight=0.3']) for s in (1, 2)
    ]
    shipped = cls_data([
        cls_run('cds', 0, 90.0, best_epoch=14),
        cls_run('cds', 1, 91.0),
        cls_run('cds', 2, 92.0),
        cls_run('off', 1, 88.0),
        cls_run('off', 2, 89.0)
    ])
    text = tables.render_cls_ablations(cls_data(ablation), shipped=shipped)
    rows = [line for line in text.splitlines() if line.startswith('| ')]
    # the shipped runs of each seed set the ablations of a mode ran, first
    assert rows[1:5] == [
        '| shipped | none | CDS (`cds`) | 0 | 90.50 | 90.00 | 1.00 | 14 |',
        '| shipped | none | CDS (`cds`) | 1, 2 | 92.00 ± 0.71 | 91.50 ± 0.71 '
        '| 2.50 ± 0.71 | 12, 12 |',
        '| every2 | `model.cds_interval=2` | CDS (`cds`) | 0 | 89.50 | '
        '89.00 | 1.00 | 12 |',
        '| w0.3 | `model.cds_head.loss_weight=0.3` | CDS (`cds`) | 1, 2 | '
        '93.00 ± 0.71 | 92.50 ± 0.71 | 2.50 ± 0.71 | 12, 12 |'
    ]
    # several seeds: paired with the shipped CDS and baseline; one seed: not
    assert '| w0.3 CDS − shipped CDS | 1, 2 | +1.00, +1.00 | 1.00 ± 0.00 |' \
        in text
    assert ('| w0.3 CDS − shipped baseline | 1, 2 | +4.00, +4.00 | '
            '4.00 ± 0.00 |') in text
    assert 'every2 CDS −' not in text


def test_dense_ablation_rows_follow_the_shipped_runs_of_their_seeds():

    def run(variant, seed, val, test, **extra):
        return dict(
            variant=variant,
            seed=seed,
            mAP=test,
            best_epoch=24,
            val_mAP=[dict(epoch=1, mAP=val - 5),
                     dict(epoch=24, mAP=val)],
            **extra)

    shipped = dict(runs=[
        run('off', 0, 76.9, 75.0),
        run('img+ins', 0, 71.0, 69.3),
        run('img+ins', 1, 70.0, 68.0)
    ])
    opts = ['model.cds_head.loss_weight=0.02']
    data = dict(
        date='2026-12-03',
        benchmark='benchmarks/det_accuracy_seeds.py',
        args=dict(epochs=24),
        shipped_variant='img+ins',
        runs=[
            run('img+ins',
                0,
                74.5,
                73.1,
                ablation='w0.02',
                ablation_options=opts)
        ])
    text = tables.render_det_dense_ablations(data, shipped=shipped)
    rows = [line for line in text.splitlines() if line.startswith('| ')][1:]
    assert rows == [
        '| as is | none | CDS image + instance (the config as it is) | 0 | '
        '71.00 | 69.30 | 24 |',
        '| w0.02 | `model.cds_head.loss_weight=0.02` | CDS image + instance '
        '(the config as it is) | 0 | 74.50 | 73.10 | 24 |'
    ]


def test_every_detection_variant_has_a_table_name():
    det = load_tool(osp.join(REPO_ROOT, 'benchmarks', 'det_accuracy_seeds.py'))
    assert set(tables.DET_NAMES) == set(det.VARIANTS)


def test_det_table_names_the_weight_the_screen_chose():
    data = det_study(
        weight_choice={
            'img+ins':
            dict(ablation='w0.1', options=[], val_mAP=62.0),
            'proposal':
            dict(
                ablation='w0.1',
                options=['model.proposal_head.loss_weight=0.1'],
                val_mAP=61.0)
        },
        runs=[
            det_run('off', 0, 20.0),
            det_run('img+ins', 0, 21.0),
            det_run('proposal', 0, 19.5)
        ])
    text = tables.render_det_dense_accuracy(data)
    rows = [line.split(' | ')[0] for line in text.splitlines()][4:7]
    assert rows == [
        '| baseline (`model.mode=off`)',
        '| CDS image + instance (the config as it is), w0.1 of the screen, '
        'the weights as they are',
        '| CDS proposal-level (`ProposalCDSHead`, the other heads off), w0.1 '
        'of the screen: `model.proposal_head.loss_weight=0.1`'
    ], text
    assert '| CDS proposal-level − baseline | 0 | -0.50 |' in text
