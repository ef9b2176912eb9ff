"""The classification benchmark does not repeat a run it has recorded."""
import json
import os.path as osp

import pytest
from cds_test_utils import REPO_ROOT, load_tool

bench = load_tool(osp.join(REPO_ROOT, 'benchmarks', 'cls_accuracy_seeds.py'))


@pytest.fixture
def no_training(refuse_training):
    return refuse_training(bench)


def results_file(tmp_path, args, opts, mode='off'):
    """A results JSON as a finished earlier run (on another machine) left
    it; its work dir is gone."""
    path = tmp_path / 'cls_accuracy.json'
    run = dict(mode=mode, seed=0, top1=89.5, cfg_options=opts)
    path.write_text(json.dumps(dict(args=vars(args), runs=[run])))
    return str(path)


def state_for(args):
    return dict(
        run_left={}, recorded=bench.recorded_runs(args.results, bench.run_key))


def test_a_run_the_results_file_holds_is_not_repeated(tmp_path, no_training):
    args = bench.parse_args(['--work-dir', str(tmp_path / 'work')])
    args.results = results_file(tmp_path, args, bench.run_opts(args, 'off', 0))
    res = bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    assert res['top1'] == 89.5
    assert no_training == []


def test_a_recorded_run_with_other_options_is_trained_again(
        tmp_path, no_training):
    args = bench.parse_args(['--work-dir', str(tmp_path / 'work')])
    opts = bench.run_opts(args, 'off', 0)
    args.results = results_file(tmp_path, args, opts[:-1])
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    # and a recorded run does not stand in for another seed
    args.results = results_file(tmp_path, args, opts)
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'off', 1, 'run 1/1', state_for(args))
    assert len(no_training) == 2


def test_an_ablation_is_keyed_by_its_variant(tmp_path, no_training):
    work = tmp_path / 'work'
    args = bench.parse_args(['--work-dir', str(work)])
    args.variant = 'half'
    opts = bench.run_opts(args, 'cds', 0)
    args.results = results_file(tmp_path, args, opts, mode='cds')
    # the main protocol's run (no variant), even with the same options,
    # does not stand in for it
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'cds', 0, 'run 1/1', state_for(args))
    assert (work / 'half_cds_seed0').is_dir()
    assert not (work / 'cds_seed0').exists()


def test_results_keep_the_other_variants_runs(tmp_path):
    args = bench.parse_args(
        ['--work-dir', str(tmp_path), '--ablation', 'half'])
    # the old flag name still works, with a warning
    with pytest.warns(DeprecationWarning, match='--ablation'):
        old = bench.parse_args(
            ['--work-dir', str(tmp_path), '--variant', 'half'])
    assert old == args
    args.results = str(tmp_path / 'ablations.json')
    other = dict(variant='every2', mode='cds', seed=0, top1=1.0)
    mine = dict(variant='half', mode='cds', seed=0, top1=2.0)
    bench.write_results(args, 'abc', [mine], [('cds', 0), ('cds', 1)], [other])
    with open(args.results) as f:
        data = json.load(f)
    assert [r['variant'] for r in data['runs']] == ['every2', 'half']
    assert data['missing'] == [dict(mode='cds', seed=1)]


def test_a_run_of_the_same_config_under_another_name_is_taken(
        tmp_path, no_training, monkeypatch):
    """The config's default became what an ablation set with an option: the
    ablation's run stands in for the protocol's run."""
    args = bench.parse_args(['--work-dir', str(tmp_path / 'work')])
    args.results = str(tmp_path / 'results' / 'cls_accuracy.json')
    (tmp_path / 'results').mkdir()
    digests = {}
    monkeypatch.setattr(bench, 'config_digest',
                        lambda config, opts: digests.get(opts[-1], 'other'))
    opts = bench.run_opts(args, 'cds', 0)
    ablation = dict(
        variant='w0.3',
        extra_options=['model.cds_head.loss_weight=0.3'],
        mode='cds',
        seed=0,
        top1=90.5,
        checkpoint='work/w0.3_cds_seed0/best.pth',
        cfg_options=opts + ['model.cds_head.loss_weight=0.3'],
        config_digest='same')
    (tmp_path / 'results' / 'cls_ablations.json').write_text(
        json.dumps(dict(runs=[ablation])))
    # another config: trained
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'cds', 0, 'run 1/1', state_for(args))
    digests[opts[-1]] = 'same'
    res = bench.one_run(args, 'cds', 0, 'run 1/1', state_for(args))
    assert len(no_training) == 1
    assert res['top1'] == 90.5 and res['cfg_options'] == opts
    assert 'variant' not in res and 'extra_options' not in res
    assert res['taken_from'] == 'work/w0.3_cds_seed0'


def test_a_call_for_some_modes_keeps_its_variants_other_runs():
    recorded = {(v, m, s): dict(variant=v, mode=m, seed=s)
                for v in (None, 'w0.3') for m in ('cds', 'dsn')
                for s in (0, 1)}
    kept = bench.other_runs(recorded, 'w0.3', [('dsn', 0), ('dsn', 1)])
    assert sorted((r['variant'] or '', r['mode'], r['seed'])
                  for r in kept) == [('', 'cds', 0), ('', 'cds', 1),
                                     ('', 'dsn', 0), ('', 'dsn', 1),
                                     ('w0.3', 'cds', 0), ('w0.3', 'cds', 1)]


def test_retrain_trains_a_recorded_run_again_in_an_emptied_dir(
        tmp_path, no_training):
    args = bench.parse_args(
        ['--work-dir', str(tmp_path / 'work'), '--retrain'])
    args.results = results_file(tmp_path, args, bench.run_opts(args, 'off', 0))
    stale = tmp_path / 'work' / 'off_seed0' / 'last_checkpoint'
    stale.parent.mkdir(parents=True)
    stale.write_text('epoch_15.pth')
    with pytest.raises(RuntimeError, match='trained'):
        bench.one_run(args, 'off', 0, 'run 1/1', state_for(args))
    assert '--resume' not in no_training[0]
    assert not stale.exists()
