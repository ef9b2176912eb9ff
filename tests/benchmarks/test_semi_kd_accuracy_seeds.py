"""benchmarks/semi_kd_accuracy_seeds.py on a tiny Fashion-MNIST IDX set: the
results layout, no repeat of a recorded run, resume of a run cut short, the
teacher warning."""
import json
import os.path as osp
import shutil

import pytest
from cds_test_utils import REPO_ROOT, load_tool, write_fashion_idx

bench = load_tool(
    osp.join(REPO_ROOT, 'benchmarks', 'semi_kd_accuracy_seeds.py'))
RECORDED = {
    'top1', 'ece', 'best_epoch', 'seed', 'method', 'mode', 'reliability',
    'val_top1', 'checkpoint', 'cfg_options', 'config_digest', 'git_commit',
    'versions', 'n_test'
}


def tiny_argv(root, setting, *extra, epochs=1, results='results.json'):
    """1 epoch on 64 training images (one batch), 32 val, 96 test."""
    return [
        setting, '--epochs',
        str(epochs), '--train-samples', '64', '--val-samples', '32', '--seeds',
        '0', '--workers', '0', '--data-root',
        str(root / 'fmnist'), '--work-dir',
        str(root / 'work'), '--results',
        str(root / 'results' / results), '--cfg-options',
        'default_hooks.logger.interval=1', *extra
    ]


@pytest.fixture(scope='module')
def semi(tmp_path_factory):
    root = tmp_path_factory.mktemp('semi')
    write_fashion_idx(str(root / 'fmnist'), n=96)
    (root / 'results').mkdir()
    # cds_labelled trains as semi_cds does, with one more option (checked
    # in test_semi_options_of_each_method)
    argv = tiny_argv(root, 'semi', '--methods', 'sup', 'semi_cds')
    bench.main(argv)
    return root, argv


def refuse(*args, **kwargs):
    raise RuntimeError('trained')


def unit_state(args):
    """A semi run's state without the split file, one iteration an epoch."""
    return dict(
        run_left={},
        eta=lambda: 0,
        epochs=args.epochs,
        recorded={},
        per_epoch=1,
        split_opts=['train_dataloader.dataset.split_file=split.json'])


def test_semi_recorded_run_is_not_repeated(tmp_path, monkeypatch):
    args = bench.parse_args(['semi', '--work-dir', str(tmp_path / 'work')])
    calls = []
    monkeypatch.setattr(bench, 'train_iterations',
                        lambda cmd, *a: calls.append(cmd) or refuse())
    state = unit_state(args)
    opts = bench.semi_opts(args, 'semi_cds', 0, state)
    state['recorded'][('semi_cds', 'cds', 0)] = dict(
        method='semi_cds',
        mode='cds',
        seed=0,
        top1=80.0,
        cfg_options=opts,
        config_digest=bench.config_digest(bench.SEMI_CONFIG, opts))
    assert bench.semi_run(args, 'semi_cds', 0, 'run', state)['top1'] == 80.0
    assert calls == []
    # another seed, another method: trained
    for method, seed in (('semi_cds', 1), ('cds_labelled', 0)):
        with pytest.raises(RuntimeError, match='trained'):
            bench.semi_run(args, method, seed, 'run', state)
    assert len(calls) == 2 and '--resume' not in calls[0]
    # --retrain trains a recorded run again
    args.retrain = True
    with pytest.raises(RuntimeError, match='trained'):
        bench.semi_run(args, 'semi_cds', 0, 'run', state)


def test_semi_run_cut_short_is_resumed(tmp_path, monkeypatch):
    args = bench.parse_args(['semi', '--work-dir', str(tmp_path / 'work')])
    calls = []
    monkeypatch.setattr(bench, 'train_iterations',
                        lambda cmd, *a: calls.append(cmd) or refuse())
    work = tmp_path / 'work' / 'sup_seed0'
    work.mkdir(parents=True)
    (work / 'last_checkpoint').write_text(str(work / 'iter_84.pth'))
    with pytest.raises(RuntimeError, match='trained'):
        bench.semi_run(args, 'sup', 0, 'run', unit_state(args))
    assert '--resume' in calls[0]
    assert 'train_cfg.max_iters=15' in calls[0]  # 15 epochs of 1 iteration


@pytest.mark.slow
def test_semi_results_have_the_cls_accuracy_layout_and_stand(
        semi, monkeypatch):
    root, argv = semi
    data = json.loads((root / 'results' / 'results.json').read_text())
    assert data['args']['epochs'] == 1
    assert data['args']['train_samples'] == 64
    assert data['args']['label_fraction'] == 0.2
    assert data['missing'] == [] and 'teacher' not in data
    runs = {r['method']: r for r in data['runs']}
    assert list(runs) == ['sup', 'semi_cds']
    for run in runs.values():
        assert RECORDED <= set(run), RECORDED - set(run)
        assert run['seed'] == 0 and run['n_test'] == 96
        assert run['best_epoch'] == 1 and len(run['val_top1']) == 1
        assert 0 <= run['top1'] <= 100 and run['ece'] >= 0
        assert osp.isfile(osp.join(REPO_ROOT, run['checkpoint']))
    split = json.loads((root / 'work' / 'split_64_20p_seed0.json').read_text())
    assert len(split['labelled']) + len(split['unlabelled']) == 64
    assert 10 <= len(split['labelled']) <= 16
    # at most 96 unlabelled images a batch: one iteration an epoch
    assert {r['iters_per_epoch'] for r in runs.values()} == {1}
    assert [r['mode'] for r in runs.values()] == ['off', 'cds']
    # the same command again trains nothing
    monkeypatch.setattr(bench, 'train_iterations', refuse)
    bench.main(argv)  # would fail the runs that trained
    again = json.loads((root / 'results' / 'results.json').read_text())
    assert again['runs'] == data['runs']


def test_semi_options_of_each_method():
    args = bench.parse_args(['semi', '--cfg-options', 'a=1'])
    state = unit_state(args)
    opts = {m: bench.semi_opts(args, m, 2, state) for m in bench.SEMI_METHODS}
    assert 'model.mode=off' in opts['sup']
    assert 'model.mode=cds' in opts['semi_cds']
    assert 'model.mode=cds' in opts['cds_labelled']
    assert 'model.unlabelled_weight=0.0' in opts['cds_labelled']
    assert not any('unlabelled_weight' in o for o in opts['semi_cds'])
    for o in opts.values():
        assert 'randomness.seed=2' in o and o[-1] == 'a=1'
        assert o[0] == 'train_dataloader.dataset.split_file=split.json'


@pytest.mark.slow
def test_semi_run_cut_short_resumes(semi, tmp_path):
    """A 2-epoch run whose work dir holds the first epoch's checkpoints and
    no result trains the second epoch only."""
    root, _ = semi
    shutil.copytree(root / 'work' / 'sup_seed0',
                    tmp_path / 'work' / 'sup_seed0')
    (tmp_path / 'work' / 'sup_seed0' / 'result.json').unlink()
    (tmp_path / 'results').mkdir()
    (tmp_path / 'fmnist').symlink_to(root / 'fmnist')
    log = tmp_path / 'work' / 'sup_seed0' / 'train.log'
    first = log.read_text()
    bench.main(tiny_argv(tmp_path, 'semi', '--methods', 'sup', epochs=2))
    resumed = log.read_text()[len(first):]
    assert 'Iter(train) [2/2]' in resumed
    assert 'Iter(train) [1/2]' not in resumed
    run = json.loads(
        (tmp_path / 'results' / 'results.json').read_text())['runs'][0]
    assert len(run['val_top1']) == 2 and run['best_epoch'] in (1, 2)


def test_teacher_warning_needs_one_point_over_the_cds_student():
    cds = [dict(method='cds_student', top1=t)
           for t in (90.0, 90.5, 91.0)] + [dict(method='student', top1=95.0)]
    assert bench.teacher_warning(dict(top1=91.5), cds) is None
    warning = bench.teacher_warning(dict(top1=91.2), cds)
    assert 'WARNING' in warning and '+0.70' in warning
    assert 'WARNING' in bench.teacher_warning(dict(top1=89.0), cds)
    # nothing to compare yet
    assert bench.teacher_warning(None, cds) is None
    assert bench.teacher_warning(dict(top1=50.0), cds[3:]) is None


def test_teacher_warning_is_printed_with_the_table(capsys):
    args = bench.parse_args(['kd', '--results', 'r.json'])
    runs = [dict(method='cds_student', top1=90.0, ece=1.0, best_epoch=3)]
    bench.print_table(args, runs, dict(top1=90.5))
    assert 'WARNING: the teacher (90.50' in capsys.readouterr().out
    bench.print_table(args, runs, dict(top1=91.0))
    assert 'WARNING' not in capsys.readouterr().out


def test_an_older_results_layout_is_replaced(tmp_path):
    old = tmp_path / 'kd_accuracy.json'
    old.write_text(
        json.dumps(
            dict(teacher=dict(top1=75.2), runs=[dict(variant='kd', seed=0)])))
    assert bench.read_recorded(str(old)) == ({}, None)
    new = dict(method='kd', mode='off', seed=0)
    old.write_text(json.dumps(dict(teacher=dict(top1=91.0), runs=[new])))
    assert bench.read_recorded(str(old)) == ({
        ('kd', 'off', 0): new
    }, dict(top1=91.0))


@pytest.fixture(scope='module')
def kd(tmp_path_factory):
    """The teacher, ``student`` taken from a classification results file
    beside the results, ``distilled_cds`` trained."""
    root = tmp_path_factory.mktemp('kd')
    write_fashion_idx(str(root / 'fmnist'), n=96)
    (root / 'results').mkdir()
    # 8 iterations an epoch: the one-cycle warm-up needs one
    argv = tiny_argv(root, 'kd', 'train_dataloader.batch_size=8', '--methods',
                     'student', 'distilled_cds', '--teacher-epochs', '2',
                     '--teacher-train-samples', '48')
    args = bench.parse_args(argv)
    sargs = bench.method_args(args, 'student', bench.cls.CONFIG)
    opts = bench.cls.run_opts(sargs, 'off', 0)
    twin = dict(
        mode='off',
        seed=0,
        top1=12.5,
        ece=1.0,
        best_epoch=1,
        checkpoint='work_dirs/cls/off_seed0/best_accuracy_top1_epoch_1.pth',
        cfg_options=opts,
        config_digest=bench.config_digest(bench.cls.CONFIG, opts))
    (root / 'results' / 'cls_accuracy.json').write_text(
        json.dumps(dict(runs=[twin])))
    bench.main(argv)
    return root


@pytest.mark.slow
def test_kd_results_hold_the_teacher_and_the_methods(kd):
    data = json.loads((kd / 'results' / 'results.json').read_text())
    teacher = data['teacher']
    assert RECORDED - {'method'} <= set(teacher)
    assert teacher['seed'] == 0 and teacher['config'] == bench.TEACHER_CONFIG
    # trained on its own images and epochs, tested as the students are
    assert (teacher['train_samples'], teacher['epochs']) == (48, 2)
    assert len(teacher['val_top1']) == 2 and teacher['n_test'] == 96
    assert 'train_dataloader.dataset.max_samples=48' in teacher['cfg_options']
    export = osp.join(REPO_ROOT, teacher['export'])
    assert osp.isfile(osp.join(export, 'plain.pth'))
    assert osp.isfile(osp.join(export, 'heads.pth'))
    runs = {r['method']: r for r in data['runs']}
    assert list(runs) == ['student', 'distilled_cds']
    assert runs['student']['taken_from'] == 'work_dirs/cls/off_seed0'
    assert runs['student']['top1'] == 12.5
    distilled = runs['distilled_cds']
    assert RECORDED <= set(distilled) and distilled['mode'] == 'cds'
    assert f'model.teacher_ckpt={teacher["export"]}/plain.pth' in \
        distilled['cfg_options']
    assert osp.isfile(osp.join(REPO_ROOT, distilled['checkpoint']))


def test_students_are_the_classification_runs_with_the_same_options(tmp_path):
    (tmp_path / 'results').mkdir()
    args = bench.parse_args(tiny_argv(tmp_path, 'kd'))
    sargs = bench.method_args(args, 'cds_student', bench.cls.CONFIG)
    opts = bench.cls.run_opts(sargs, 'cds', 1)
    # recorded under an older config: another digest, or none at all
    recorded = dict(
        mode='cds',
        seed=1,
        top1=90.5,
        cfg_options=opts,
        config_digest='0ld',
        checkpoint='work_dirs/cls/cds_seed1/best.pth')
    other_seed = dict(recorded, seed=0, top1=1.0)
    ablation = dict(recorded, variant='w0.1', top1=2.0)
    (tmp_path / 'results' / 'cls_accuracy.json').write_text(
        json.dumps(dict(runs=[other_seed, ablation, recorded])))
    res = bench.classification_run(sargs, 'cds', 1, 'cds_student')
    assert (res['top1'], res['taken_from']) == (90.5,
                                                'work_dirs/cls/cds_seed1')
    assert bench.as_method(res)['method'] == 'cds_student'
    assert 'config_digest' not in res
    # another option (e.g. another --workers) trains the student instead
    sargs.cfg_options = ['model.cds_head.loss_weight=0.1']
    assert bench.classification_run(sargs, 'cds', 1, 'cds_student') is None
