"""The detection benchmark's data options, and that it does not repeat a run
it has recorded (no training)."""
import argparse
import json
import os
import os.path as osp

import pytest
from cds_test_utils import REPO_ROOT, load_tool

bench = load_tool(osp.join(REPO_ROOT, 'benchmarks', 'det_accuracy_seeds.py'))


@pytest.fixture
def no_training(refuse_training):
    return refuse_training(bench)


def dense_args(tmp_path, *extra):
    return bench.parse_args([
        '--dataset', 'dense', '--work-dir',
        str(tmp_path / 'work'), '--data-dir',
        str(tmp_path / 'dense'), *extra
    ])


def results_file(tmp_path, args, opts, seed=0):
    """A results JSON as a finished earlier run (on another machine) left
    it; its work dir is gone."""
    path = tmp_path / 'det_dense_accuracy.json'
    run = dict(variant='off', seed=seed, mAP=31.5, cfg_options=opts)
    path.write_text(json.dumps(dict(args={}, runs=[run])))
    return str(path)


def state_for(args):
    return dict(
        durations=[],
        queued=0,
        recorded=bench.recorded_runs(args.results, bench.run_key))


def merged_config(config, opts):
    """The config as ``tools/train.py`` sees it after ``--cfg-options``."""
    from mmengine.config import Config, DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, config), import_custom_modules=False)
    cfg.merge_from_dict(
        parser.parse_args(['--cfg-options', *opts]).cfg_options)
    return cfg


def test_dense_options_point_each_split_at_its_own_files(tmp_path):
    args = dense_args(tmp_path, '--num-train', '2', '--num-val', '1',
                      '--num-test', '2', '--cfg-options',
                      'optim_wrapper.clip_grad.max_norm=10')
    bench.build_data(args)
    cfg = merged_config(bench.DATASETS['dense']['config'],
                        bench.run_opts(args, 'ins', 0))
    anns = {}
    for split in ('train', 'val', 'test'):
        ds = cfg[f'{split}_dataloader'].dataset
        ann_file = osp.join(ds.data_root, ds.ann_file)
        with open(ann_file) as f:
            anns[split] = json.load(f)
        for im in anns[split]['images']:
            assert osp.isfile(
                osp.join(ds.data_root, ds.data_prefix.img, im['file_name']))
        if split != 'train':
            assert cfg[f'{split}_evaluator'].ann_file == ann_file
    assert [len(anns[s]['images']) for s in ('train', 'val', 'test')] == \
        [2, 1, 2]
    # train / val from generator seed 0, test from another seed: the test
    # set's first image is not the val image
    assert anns['train']['annotations'] != anns['val']['annotations']
    assert [a['bbox'] for a in anns['test']['annotations']
            if a['image_id'] == anns['test']['images'][0]['id']] != \
        [a['bbox'] for a in anns['val']['annotations']]
    assert cfg.model.mode == 'cds' and cfg.model.cds_head is None
    assert cfg.model.instance_head.type == 'InstanceCDSHead'
    assert cfg.optim_wrapper.clip_grad.max_norm == 10
    # the config's own 24-epoch schedule, val and a checkpoint every epoch
    assert cfg.train_cfg.max_epochs == 24 and cfg.train_cfg.val_interval == 1
    assert cfg.param_scheduler[1].milestones == [20]
    assert cfg.default_hooks.checkpoint.interval == 1
    assert cfg.default_hooks.checkpoint.save_best == 'coco/bbox_mAP'


def test_mosaic_options_point_each_split_at_its_own_files():
    args = argparse.Namespace(
        dataset='mosaic',
        data_dir='/d/mosaic',
        epochs=24,
        cfg_options=[],
        weight_choice={})
    # train / val: the training side of generator seed 0 split by image id;
    # test: the t10k side of generator seed 1, in its own folder
    expected = [
        'model.instance_head=None',
        'train_dataloader.dataset.data_root=/d/mosaic/',
        'train_dataloader.dataset.ann_file='
        'annotations/instances_train-split.json',
        'train_dataloader.dataset.data_prefix.img=train/',
        'val_dataloader.dataset.data_root=/d/mosaic/',
        'val_dataloader.dataset.ann_file='
        'annotations/instances_val-split.json',
        'val_dataloader.dataset.data_prefix.img=train/',
        'val_evaluator.ann_file=/d/mosaic/'
        'annotations/instances_val-split.json',
        'test_dataloader.dataset.data_root=/d/mosaic_test/',
        'test_dataloader.dataset.ann_file=annotations/instances_val.json',
        'test_dataloader.dataset.data_prefix.img=val/',
        'test_evaluator.ann_file=/d/mosaic_test/annotations/'
        'instances_val.json', 'randomness.seed=3', 'train_cfg.max_epochs=24',
        'train_cfg.val_interval=1', 'param_scheduler.1.milestones=[16]',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=1',
        'default_hooks.checkpoint.save_best=coco/bbox_mAP',
        'default_hooks.checkpoint.rule=greater'
    ]
    assert bench.run_opts(args, 'img', 3) == expected
    # and so are the defaults
    args = bench.parse_args([])
    assert (args.dataset, args.epochs, args.num_train, args.num_val,
            args.num_test) == ('mosaic', 24, 800, 200, 1000)
    assert osp.join(REPO_ROOT,
                    args.data_dir) == osp.join(REPO_ROOT,
                                               'data/fashion_mosaic')
    assert args.config == bench.DATASETS['mosaic']['config'] == \
        'configs/demo/faster-rcnn_r18-w16_fpn_cds_fashion-mosaic.py'
    # the config's own schedule: the options restate it
    cfg = merged_config(args.config, bench.run_opts(args, 'off', 0))
    assert cfg.param_scheduler[1].milestones == [16]
    assert cfg.train_cfg.max_epochs == 24


def test_a_run_the_results_file_holds_is_not_repeated(tmp_path, no_training):
    args = dense_args(tmp_path)
    args.results = results_file(tmp_path, args, bench.run_opts(args, 'off', 0))
    res = bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    assert res['mAP'] == 31.5
    assert no_training == []


def test_a_recorded_run_with_other_options_or_seed_is_trained(
        tmp_path, no_training):
    args = dense_args(tmp_path, '--cfg-options',
                      'optim_wrapper.clip_grad.max_norm=10')
    opts = bench.run_opts(args, 'off', 0)
    args.results = results_file(tmp_path, args, opts[:-1])
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    args.results = results_file(tmp_path, args, opts)
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'off', 1, 'run 1/1', state_for(args))
    assert len(no_training) == 2


def test_a_result_json_in_the_work_dir_is_not_repeated(tmp_path, no_training):
    args = dense_args(tmp_path)
    work = tmp_path / 'work' / 'ins_seed1'
    work.mkdir(parents=True)
    opts = bench.run_opts(args, 'ins', 1)
    (work / 'result.json').write_text(
        json.dumps(dict(variant='ins', seed=1, mAP=2.0, cfg_options=opts)))
    assert bench.one_run(args, 'ins', 1, 'run 1/1',
                         state_for(args))['mAP'] == 2.0
    (work / 'result.json').write_text(
        json.dumps(dict(variant='ins', seed=1, mAP=2.0, cfg_options=[])))
    with pytest.raises(SystemExit, match='other options'):
        bench.one_run(args, 'ins', 1, 'run 1/1', state_for(args))
    assert no_training == []


def test_a_run_of_the_same_config_under_another_name_is_taken(
        tmp_path, no_training):
    """An ablation's option became the config's default: the ablation's
    run, in another results file, stands in for the study's run."""
    args = dense_args(tmp_path)
    (tmp_path / 'results').mkdir()
    args.results = str(tmp_path / 'results' / 'det_dense_accuracy.json')
    opts = bench.run_opts(args, 'ins', 0)
    # made as `--variants img+ins --ablation ins-only --cfg-options
    # model.cds_head=None` while the config had an image-level head
    ablation_opts = opts[1:] + ['model.cds_head=None']
    config = bench.DATASETS['dense']['config']
    ablation = dict(
        ablation='ins-only',
        ablation_options=['model.cds_head=None'],
        variant='img+ins',
        seed=0,
        mAP=76.3,
        checkpoint='work/ins-only_img+ins_seed0/best.pth',
        cfg_options=ablation_opts,
        config_digest=bench.config_digest(config, ablation_opts))
    (tmp_path / 'results' / 'det_dense_ablations.json').write_text(
        json.dumps(dict(runs=[ablation])))
    res = bench.one_run(args, 'ins', 0, 'run 1/1', state_for(args))
    assert no_training == []
    assert (res['variant'], res['seed'], res['mAP']) == ('ins', 0, 76.3)
    assert res['cfg_options'] == opts and 'ablation' not in res
    assert res['taken_from'] == 'work/ins-only_img+ins_seed0'
    # another seed is another config
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'ins', 1, 'run 1/1', state_for(args))


def test_the_variants_follow_the_config_heads(capsys):
    # the mosaic config has both heads, the dense one the instance head alone
    assert bench.parse_args([]).variants == ['off', 'img', 'img+ins']
    assert bench.parse_args(['--dataset', 'dense']).variants == ['off', 'ins']
    with pytest.raises(SystemExit):
        bench.parse_args(['--dataset', 'dense', '--variants', 'off', 'img'])
    assert '--variants img needs model.cds_head' in capsys.readouterr().err


def test_a_run_cut_short_resumes(tmp_path, no_training):
    args = dense_args(tmp_path)
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    assert '--resume' not in no_training[-1]
    work = tmp_path / 'work' / 'off_seed0'
    (work / 'last_checkpoint').write_text(str(work / 'epoch_3.pth'))
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    cmd = no_training[-1]
    assert cmd[cmd.index('--work-dir') + 1] == str(work)
    assert '--resume' in cmd[:cmd.index('--cfg-options')]
    # but not with other options
    args.cfg_options = ['optim_wrapper.clip_grad.max_norm=10']
    with pytest.raises(SystemExit, match='other options'):
        bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    assert len(no_training) == 2


def write_scalars(work, stamp, val_maps):
    """mmengine's scalars of one training attempt: a loss and the val
    ``coco/bbox_mAP`` (0-1) of each ``{epoch: mAP}``."""
    os.makedirs(osp.join(work, stamp, 'vis_data'))
    recs = [dict(loss=1.0, epoch=1, step=5)] + [{
        'coco/bbox_mAP': v,
        'coco/bbox_mAP_50': 0.9,
        'step': e
    } for e, v in val_maps.items()]
    with open(osp.join(work, stamp, 'vis_data', 'scalars.json'), 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in recs))


def fake_train(cmd, log, *args):
    """What tools/train.py leaves: scalars and the best checkpoint."""
    work = cmd[cmd.index('--work-dir') + 1]
    write_scalars(work, '20260101_000000', {1: 0.1, 2: 0.3})
    open(osp.join(work, 'best_coco_bbox_mAP_epoch_2.pth'), 'w').close()


def fake_test(cmd, log):
    """What tools/test.py leaves: its json log."""
    assert cmd[1] == 'tools/test.py'
    assert cmd[3].endswith('best_coco_bbox_mAP_epoch_2.pth')
    test_dir = osp.join(cmd[cmd.index('--work-dir') + 1], '20260101_000001')
    os.makedirs(test_dir)
    with open(osp.join(test_dir, '20260101_000001.json'), 'w') as f:
        json.dump({'coco/bbox_mAP': 0.25, 'coco/bbox_mAP_50': 0.5}, f)


def test_a_finished_run_is_recorded_and_not_repeated(tmp_path, monkeypatch,
                                                     capsys):
    monkeypatch.setattr(bench, 'build_data', lambda args: None)
    monkeypatch.setattr(bench, 'train_with_progress', fake_train)
    monkeypatch.setattr(bench, 'run', fake_test)
    results = str(tmp_path / 'res' / 'det.json')
    argv = [
        '--dataset', 'dense', '--work-dir',
        str(tmp_path / 'work'), '--data-dir',
        str(tmp_path / 'dense'), '--seeds', '0', '--variants', 'off',
        '--epochs', '2', '--results', results
    ]
    bench.main(argv)
    with open(results) as f:
        out = json.load(f)
    assert out['benchmark'] == 'benchmarks/det_accuracy_seeds.py'
    assert 'dense one-class' in out['protocol']
    assert out['missing'] == [] and out['args']['dataset'] == 'dense'
    assert out['shipped_variant'] == 'ins'
    [res] = out['runs']
    assert (res['variant'], res['seed'], res['best_epoch']) == ('off', 0, 2)
    assert (res['mAP'], res['mAP50']) == (25.0, 50.0)
    assert res['val_mAP'] == [dict(epoch=1, mAP=10.0), dict(epoch=2, mAP=30.0)]
    assert res['cfg_options'] == bench.run_opts(
        bench.parse_args(argv), 'off', 0)
    assert 'dense one-class set test bbox mAP' in capsys.readouterr().out
    # again: neither trained (fake_train's makedirs would fail) nor tested
    monkeypatch.setattr(bench, 'run', None)
    bench.main(argv)
    with open(results) as f:
        assert json.load(f)['runs'] == [res]


def test_the_val_curve_joins_the_attempts_of_a_resumed_run(tmp_path):
    work = str(tmp_path)
    write_scalars(work, '20260101_000000', {1: 0.1, 2: 0.5})
    write_scalars(work, '20260101_000100', {2: 0.3, 3: 0.4})
    assert bench.val_curve(work) == [
        dict(epoch=1, mAP=10.0),
        dict(epoch=2, mAP=30.0),
        dict(epoch=3, mAP=40.0)
    ]


def test_results_name_no_machine_path_of_the_repo(tmp_path):
    args = bench.parse_args([
        '--dataset', 'dense', '--work-dir',
        osp.join(REPO_ROOT, 'work_dirs', 'x'), '--results',
        str(tmp_path / 'r.json')
    ])
    bench.write_results(args, 'abc', [], [('off', 0)])
    with open(args.results) as f:
        recorded = json.load(f)['args']
    assert recorded['work_dir'] == osp.join('work_dirs', 'x')


def test_an_ablation_trains_apart_and_the_file_keeps_the_other_runs(
        tmp_path, monkeypatch):
    monkeypatch.setattr(bench, 'build_data', lambda args: None)
    monkeypatch.setattr(bench, 'train_with_progress', fake_train)
    monkeypatch.setattr(bench, 'run', fake_test)
    results = str(tmp_path / 'det.json')
    argv = [
        '--dataset', 'dense', '--work-dir',
        str(tmp_path / 'work'), '--data-dir',
        str(tmp_path / 'dense'), '--seeds', '0', '--epochs', '2', '--results',
        results
    ]
    bench.main(argv + ['--variants', 'off'])
    opts = ['model.instance_head.loss_weight=0.02']
    bench.main(
        argv +
        ['--variants', 'ins', '--ablation', 'w0.02', '--cfg-options', *opts])
    assert osp.isfile(tmp_path / 'work' / 'w0.02_ins_seed0' / 'result.json')
    with open(results) as f:
        runs = json.load(f)['runs']
    assert [(r.get('ablation'), r['variant'])
            for r in runs] == [(None, 'off'), ('w0.02', 'ins')]
    assert runs[1]['ablation_options'] == opts
    assert runs[1]['cfg_options'][-1] == opts[0]
    # another variant alone keeps both; the same variant without the
    # ablation is another run
    monkeypatch.setattr(bench, 'run', fake_test)
    bench.main(argv + ['--variants', 'ins'])
    with open(results) as f:
        runs = json.load(f)['runs']
    assert [(r.get('ablation'), r['variant'])
            for r in runs] == [(None, 'off'), ('w0.02', 'ins'), (None, 'ins')]


def test_eta_of_all_runs_counts_the_queued_ones_at_this_runs_pace(
        monkeypatch, capsys):
    """Near the end of the first run, 2 queued runs still take 2 runs' time
    (not 2 x the minute this one has left)."""
    clock = iter([1000.0, 2140.0])  # the run began, then the report
    monkeypatch.setattr(bench.time, 'time', lambda: next(clock))

    def watch(cmd, log, epochs, val_re, report):
        report('epoch 24/24 iter 40/50', ('23', '0.757'), 60.0)

    monkeypatch.setattr(bench, 'watch_training', watch)
    state = dict(durations=[], queued=2)
    bench.train_with_progress([], 'log', 'run 2/9', 24, state)
    out = capsys.readouterr().out
    assert 'ETA this run 1 min, all 41 min' in out, out


def test_the_proposal_variant_builds_the_proposal_head_alone():
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import cds_mm  # noqa: F401  (registries)
    args = argparse.Namespace(
        dataset='mosaic',
        data_dir='/d/mosaic',
        epochs=24,
        cfg_options=[],
        weight_choice={})
    cfg = merged_config(bench.DATASETS['mosaic']['config'],
                        bench.run_opts(args, 'proposal', 0))
    assert cfg.model.mode == 'cds'
    assert cfg.model.cds_head is None and cfg.model.instance_head is None
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model.proposal_head).__name__ == 'ProposalCDSHead'
    assert model.cds_head is None and model.instance_head is None


def screen_run(variant, ablation, options, val_maps):
    return dict(
        variant=variant,
        seed=0,
        ablation=ablation,
        ablation_options=options,
        mAP=50.0,
        val_mAP=[dict(epoch=e + 1, mAP=m) for e, m in enumerate(val_maps)])


def test_each_variant_takes_the_weight_its_screen_measured_best_on_val(
        tmp_path):

    def mosaic_args(*extra):
        return bench.parse_args([
            '--work-dir',
            str(tmp_path / 'work'), '--data-dir',
            str(tmp_path / 'mosaic'), *extra
        ])

    screen = tmp_path / 'screen.json'
    w01 = ['model.instance_head.loss_weight=0.01']
    screen.write_text(
        json.dumps(
            dict(runs=[
                # the best epoch decides, not the last
                screen_run('ins', 'w0.01', w01, [40.0, 62.2, 61.0]),
                screen_run('ins', 'w0.1', [], [40.0, 61.9, 61.8]),
                screen_run('img', 'w0.01', ['model.cds_head.loss_weight=0.01'],
                           [50.0, 60.0]),
                screen_run('img', 'w0.1', [], [50.0, 60.5]),
                dict(
                    variant='ins',
                    seed=0,
                    mAP=1.0,
                    val_mAP=[dict(epoch=1, mAP=99.0)]),  # not a screen run
            ])))
    args = mosaic_args('--variants', 'off', 'img', 'ins', '--weights-from',
                       str(screen))
    where = bench.repo_path(str(screen))
    assert args.weight_choice == dict(
        img=dict(
            ablation='w0.1', seed=0, screen=where, options=[], val_mAP=60.5),
        ins=dict(
            ablation='w0.01', seed=0, screen=where, options=w01, val_mAP=62.2))
    assert bench.run_opts(args, 'ins', 1)[-1] == w01[0]
    as_is = bench.run_opts(mosaic_args(), 'img', 1)
    assert bench.run_opts(args, 'img', 1) == as_is
    with pytest.raises(SystemExit, match="no run of variant 'img\\+ins'"):
        mosaic_args('--variants', 'img+ins', '--weights-from', str(screen))


def test_the_screens_chosen_run_is_the_studys_seed_0(tmp_path, no_training):
    """The screen's run at the chosen weight trained the study's config:
    taken, not trained again; the file records the choice."""
    (tmp_path / 'results').mkdir()
    screen = tmp_path / 'results' / 'screen.json'
    w01 = ['model.instance_head.loss_weight=0.01']
    args = dense_args(tmp_path, '--variants', 'ins', '--ablation', 'w0.01',
                      '--cfg-options', *w01)
    run = dict(
        screen_run('ins', 'w0.01', w01, [62.2]),
        checkpoint='work/w0.01_ins_seed0/best.pth',
        cfg_options=bench.run_opts(args, 'ins', 0),
        config_digest=bench.config_digest(args.config,
                                          bench.run_opts(args, 'ins', 0)))
    screen.write_text(json.dumps(dict(runs=[run])))
    args = dense_args(tmp_path, '--variants', 'ins', '--weights-from',
                      str(screen), '--results',
                      str(tmp_path / 'results' / 'study.json'))
    res = bench.one_run(args, 'ins', 0, 'run 1/1', state_for(args))
    assert no_training == []
    assert res['taken_from'] == 'work/w0.01_ins_seed0'
    assert 'ablation' not in res and res['cfg_options'][-1] == w01[0]
    bench.write_results(args, 'abc', [res], [('ins', 0)])
    study = tmp_path / 'results' / 'study.json'
    out = json.loads(study.read_text())
    assert out['weight_choice']['ins']['ablation'] == 'w0.01'
    assert 'weight_choice' not in out['args'] and 'w0.01' not in str(
        out['args'])
    assert out['protocol'].endswith('in its weight screen (weight_choice)')
    # a later call for another variant keeps the choice its runs were made at
    args = dense_args(tmp_path, '--variants', 'off', '--results', str(study))
    bench.write_results(args, 'abc', [], [('off', 0)], others=[res])
    out = json.loads(study.read_text())
    assert out['weight_choice']['ins']['options'] == w01
    assert out['protocol'].endswith('(weight_choice)')
