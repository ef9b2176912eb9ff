"""benchmarks/cls_calibration.py: on a 2-iteration checkpoint of the demo
classifier, the fitted T and the scaled test ECE checked against
``ECEMetric`` on the checkpoint's own test predictions; resume and a missing
checkpoint without one."""
import json
import os.path as osp
import pickle

import mmpretrain
import pytest
from cds_test_utils import (DEMO_CLS_CFG, REPO_ROOT, TEST, cls_data_cfg,
                            finish, load_tool, popen_python, popen_train,
                            tiny_cfg, wait, write_fashion_idx)

from cds_mm.evaluation.metrics import ECEMetric

bench = load_tool(osp.join(REPO_ROOT, 'benchmarks', 'cls_calibration.py'))


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp('calibration')
    write_fashion_idx(str(root / 'fmnist'), n=48)
    cfg = root / 'cds.py'
    cfg.write_text(
        tiny_cfg(DEMO_CLS_CFG, iters=2) +
        cls_data_cfg(str(root / 'fmnist'), val_size=16))
    finish(popen_train(cfg, root / 'train'))
    ckpt = str(root / 'train' / 'iter_2.pth')
    rc, out, err = wait(
        popen_python(
            TEST,
            cfg,
            ckpt,
            '--out',
            root / 'preds.pkl',
            '--work-dir',
            root / 'test',
            cwd=root),
        timeout=600)
    assert rc == 0, (out + err)[-4000:]
    run = dict(mode='cds', seed=0, top1=50.0, checkpoint=ckpt, cfg_options=[])
    results = root / 'cls_accuracy.json'
    results.write_text(
        json.dumps(
            dict(
                args=dict(config=str(cfg), workers=1, results='r/cls.json'),
                runs=[run])))
    argv = [
        '--results',
        str(results), '--out',
        str(root / 'cls_calibration.json'), '--work-dir',
        str(root / 'work'), '--fig-dir',
        str(root / 'figures')
    ]
    bench.main(argv)
    return root, argv


@pytest.mark.slow
def test_the_test_split_is_scaled_by_the_val_temperature(calibrated):
    root, _ = calibrated
    data = json.loads((root / 'cls_calibration.json').read_text())
    res, = data['runs']
    assert (res['method'], res['seed']) == ('cds', 0)
    assert set(bench.MEASURED) <= set(res)
    t = res['temperature']
    assert t > 0 and t != 1.0
    assert res['val_nll_after'] <= res['val_nll_before']
    assert (res['val_num_samples'], res['test_num_samples']) == (16, 48)
    with open(root / 'preds.pkl', 'rb') as f:
        samples = pickle.load(f)
    for when, temperature in (('before', 1.0), ('after', t)):
        metric = ECEMetric(save_diagram=False, temperature=temperature)
        metric.process(None, samples)
        assert res[f'test_ece_{when}'] == pytest.approx(
            metric.evaluate(len(samples))['calib/ece'], abs=1e-6)
        assert sum(res[f'reliability_{when}']['count']) == 48
    assert res['test_ece_after'] != pytest.approx(res['test_ece_before'])
    hits = sum(
        int(s['pred_score'].argmax()) == int(s['gt_label']) for s in samples)
    assert res['top1_before'] == res['top1_after'] == 100 * hits / 48
    assert data['summary']['cds']['temperature'] == dict(mean=t, std=None)
    for when in ('before', 'after'):
        assert (root / 'figures' /
                f'calibration_reliability_{when}.png').stat().st_size > 0
    # a committed results file names no folder of the machine it ran on,
    # and each run the stack it ran on
    assert not osp.isabs(data['args']['fig_dir'])
    assert res['versions']['mmpretrain'] == mmpretrain.__version__


def refuse(*args, **kwargs):
    raise RuntimeError('calibrated again')


def results_file(tmp_path, checkpoint):
    path = tmp_path / 'cls_accuracy.json'
    run = dict(
        mode='off', seed=0, top1=89.7, checkpoint=checkpoint, cfg_options=[])
    path.write_text(
        json.dumps(
            dict(
                args=dict(workers=1, results='r/cls.json'),
                runs=[run, dict(run, mode='dsn', variant='half')])))
    return [
        '--results',
        str(path), '--out',
        str(tmp_path / 'out.json'), '--work-dir',
        str(tmp_path / 'work'), '--fig-dir', ''
    ]


def test_a_missing_checkpoint_names_the_retrain_command(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, 'run', refuse)
    argv = results_file(tmp_path, 'work_dirs/gone/best_epoch_3.pth')
    with pytest.raises(SystemExit, match='1 run'):
        bench.main(argv)
    missing, = json.loads((tmp_path / 'out.json').read_text())['missing']
    assert (missing['method'], missing['seed']) == ('off', 0)
    assert 'work_dirs/gone/best_epoch_3.pth is missing' in missing['reason']
    assert ('cls_accuracy_seeds.py --modes off --seeds 0 --retrain '
            '--results r/cls.json --workers 1') in missing['reason']
    # an ablation's run names its ablation
    with pytest.raises(SystemExit, match='--ablation half'):
        bench.main(argv + ['--ablation', 'half', '--modes', 'dsn'])


def test_a_calibrated_run_is_not_repeated(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, 'run', refuse)
    argv = results_file(tmp_path, 'work_dirs/gone/best_epoch_3.pth')
    old = dict(
        method='off', seed=0, checkpoint='work_dirs/gone/best_epoch_3.pth')
    old.update({k: 1.5
                for k in bench.MEASURED},
               top1_before=89.7,
               top1_after=89.7)
    (tmp_path / 'out.json').write_text(json.dumps(dict(runs=[old])))
    bench.main(argv)
    data = json.loads((tmp_path / 'out.json').read_text())
    assert data['runs'] == [old] and data['missing'] == []
    # from the run's own file too, without the results file
    (tmp_path / 'out.json').unlink()
    (tmp_path / 'work' / 'off_seed0').mkdir(parents=True)
    (tmp_path / 'work' / 'off_seed0' / 'calibration.json').write_text(
        json.dumps(old))
    bench.main(argv)
    assert json.loads((tmp_path / 'out.json').read_text())['runs'] == [old]
    # another checkpoint (the run was trained again): calibrated again
    (tmp_path / 'out.json').unlink()
    old['checkpoint'] = 'work_dirs/old/best_epoch_2.pth'
    (tmp_path / 'work' / 'off_seed0' / 'calibration.json').write_text(
        json.dumps(old))
    with pytest.raises(SystemExit, match='1 run'):
        bench.main(argv)
