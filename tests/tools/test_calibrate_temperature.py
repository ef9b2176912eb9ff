"""tools/calibrate_temperature.py: fit T on val, store it in the checkpoint,
use it at test time through ``ECEMetric(temperature=T)``.

The demo CDS classifier (random backbone, its linear head fitted in-process
on the train split's features, then its logits multiplied so that the val
temperature is 3: overconfident by construction) is saved as mmengine saves
checkpoints, and so is its inner plain ImageClassifier. The tool runs in
subprocesses on both; ``tools/test.py`` then runs the written checkpoint on
the test split with the temperature option. References come from the model's
own ``test_step`` in this process.
"""
import copy
import json
import os.path as osp
import pickle
import re

import pytest
import torch
from cds_test_utils import (DEMO_CLS_CFG, REPO_ROOT, TEST, build_cls,
                            cls_data_cfg, kill_running, load_tool,
                            popen_python, wait, write_fashion_idx)
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

from cds_mm.evaluation import fit_temperature
from cds_mm.evaluation.metrics import ECEMetric
from cds_mm.evaluation.temperature_scaling import (scores_to_logits,
                                                   temperature_nll)

TOOL = osp.join(REPO_ROOT, 'tools', 'calibrate_temperature.py')
calibrate = load_tool(TOOL)
T_VAL = 3.0
RECORD_KEYS = {
    'temperature', 'num_bins', 'val_num_samples', 'val_nll_before',
    'val_nll_after', 'val_ece_before', 'val_ece_after', 'config',
    'cfg_options', 'checkpoint'
}


def _load(path):
    """A checkpoint this module wrote (trusted: a HistoryBuffer may be in it,
    and this process need not have applied cds_mm.compat)."""
    return torch.load(path, map_location='cpu', weights_only=False)


def _save_like_mmengine(state_dict, path, with_hub=False):
    """``meta``, ``state_dict``, ``optimizer`` and, as mmengine's
    CheckpointHook writes, a ``message_hub`` (the tool reads it through
    cds_mm.compat's allowlist)."""
    ckpt = dict(
        meta=dict(epoch=4, iter=40),
        state_dict=state_dict,
        optimizer=dict(state={}, param_groups=[dict(lr=0.1)]))
    if with_hub:
        hub = MessageHub.get_instance(f'calibrate_temperature_{path.name}')
        hub.update_scalar('train/loss', 0.5)
        ckpt['message_hub'] = hub.state_dict()
    torch.save(ckpt, path)


def _losses(ckpt):
    """The logged losses of a checkpoint's message hub (HistoryBuffer has no
    ``__eq__``)."""
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    return buffer.data[0].tolist()


def test_write_checkpoint_adds_meta_and_keeps_the_rest(tmp_path):
    sd = {'w': torch.arange(3.0)}
    _save_like_mmengine(sd, tmp_path / 'a.pth')
    calibrate.write_checkpoint(
        str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'),
        dict(temperature=2.0))
    a, b = _load(tmp_path / 'a.pth'), _load(tmp_path / 'b.pth')
    assert b['meta'] == dict(a['meta'], temperature_scaling={'temperature': 2})
    assert torch.equal(b['state_dict']['w'], sd['w'])
    assert b['optimizer'] == a['optimizer'] == dict(
        state={}, param_groups=[dict(lr=0.1)])
    assert 'temperature_scaling' not in a['meta']
    # a bare state dict is wrapped; in place is allowed
    torch.save(sd, tmp_path / 'bare.pth')
    calibrate.write_checkpoint(
        str(tmp_path / 'bare.pth'), str(tmp_path / 'bare.pth'),
        dict(temperature=0.5))
    bare = _load(tmp_path / 'bare.pth')
    assert bare['meta'] == {'temperature_scaling': {'temperature': 0.5}}
    assert list(bare['state_dict']) == ['w']
    assert not list(tmp_path.glob('*.tmp'))


def test_test_option_names_the_ece_metric_of_the_config():
    cfg = Config(
        dict(test_evaluator=[dict(
            type='Accuracy'), dict(type='ECEMetric')]))
    assert calibrate.test_option(cfg, 2.5) == \
        'test_evaluator.1.temperature=2.5'
    cfg = Config(dict(test_evaluator=dict(type='ECEMetric', num_bins=10)))
    assert calibrate.test_option(cfg, 1.25) == \
        'test_evaluator.temperature=1.25'
    assert calibrate.test_option(
        Config(dict(test_evaluator=dict(type='Accuracy'))), 2.0) is None


def test_collector_refuses_what_is_not_single_label_classification():
    collector = calibrate.ScoreCollector()
    with pytest.raises(ValueError, match='pred_score'):
        collector.process(None, [dict(pred_instances={}, gt_label=[0])])
    with pytest.raises(ValueError, match='gt_label'):
        collector.process(None, [
            dict(pred_score=torch.ones(3) / 3, gt_label=torch.tensor([0, 1]))
        ])


# ------------------------------------------------------------------ end to end


def _predict(model, root, split):
    """Scores and labels of a whole split through ``model.test_step``, with
    the config's test pipeline (one batch, as the tool's loops run it)."""
    from mmpretrain.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(
            dict(
                type='FashionMNISTIDX',
                data_root=str(root / 'fmnist'),
                split=split,
                val_size=16,
                pipeline=[dict(type='PackInputs')]))
    batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        out = model.test_step(batch)
    return (torch.stack([s.pred_score for s in out]),
            torch.tensor([int(s.gt_label) for s in out]))


def _overconfident_model(root):
    """The demo CDS classifier, head fitted on train features, logits scaled
    so that the val temperature is ``T_VAL``; its val scores and labels."""
    torch.manual_seed(0)
    model = build_cls(copy.deepcopy(Config.fromfile(DEMO_CLS_CFG).model))
    model.eval()
    head = model.classifier.head.fc
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import DATASETS
        train = DATASETS.build(
            dict(
                type='FashionMNISTIDX',
                data_root=str(root / 'fmnist'),
                split='train',
                val_size=16,
                pipeline=[dict(type='PackInputs')]))
    data = model.data_preprocessor(
        pseudo_collate([train[i] for i in range(len(train))]))
    labels = torch.tensor([int(s.gt_label) for s in data['data_samples']])
    with torch.no_grad():
        feats = model.classifier.extract_feat(data['inputs'])[-1]
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(feats), labels).backward()
        opt.step()
    t0 = fit_temperature(*_val_logits(model, root))
    with torch.no_grad():  # softmax(k z / (k t0)) = softmax(z / t0)
        head.weight.mul_(T_VAL / t0)
        head.bias.mul_(T_VAL / t0)
    return model


def _val_logits(model, root):
    scores, labels = _predict(model, root, 'val')
    return scores_to_logits(scores), labels


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Calibrate the CDS and the plain checkpoint (in parallel), then test the
    calibrated CDS checkpoint on the test split with the option printed."""
    root = tmp_path_factory.mktemp('calib')
    write_fashion_idx(str(root / 'fmnist'), n=48)
    data = cls_data_cfg(str(root / 'fmnist'), val_size=16)
    (root / 'cds.py').write_text(f'_base_ = {DEMO_CLS_CFG!r}\n' + data)
    classifier = Config.fromfile(DEMO_CLS_CFG).model.classifier.to_dict()
    plain = f'model = {dict(classifier, _delete_=True)!r}\n'
    (root / 'plain.py').write_text(f'_base_ = {DEMO_CLS_CFG!r}\n' + data +
                                   plain)
    model = _overconfident_model(root)
    _save_like_mmengine(model.state_dict(), root / 'cds.pth', True)
    _save_like_mmengine(model.classifier.state_dict(), root / 'plain.pth',
                        True)
    cds_args = ('--out', root / 'cds_t.pth', '--test', '--dump-json',
                root / 'cds_t.json', '--work-dir', root / 'wd_cds')
    plain_args = (root / 'plain.py', root / 'plain.pth', '--work-dir',
                  root / 'wd_plain')
    procs = dict(
        cds=popen_python(
            TOOL, root / 'cds.py', root / 'cds.pth', *cds_args, cwd=root),
        plain=popen_python(TOOL, *plain_args, cwd=root))
    try:
        results = {k: wait(p, timeout=900) for k, p in procs.items()}
        for rc, out, err in results.values():
            assert rc == 0, (out + err)[-4000:]
        option = re.search(r'--cfg-options (test_evaluator\S+)',
                           results['cds'][1]).group(1)
        test_args = (root / 'cds.py', root / 'cds_t.pth', '--out',
                     root / 'test_preds.pkl', '--work-dir', root / 'wd_test',
                     '--cfg-options', option)
        procs['test'] = popen_python(TEST, *test_args, cwd=root)
        results['test'] = wait(procs['test'], timeout=900)
        assert results['test'][0] == 0, ''.join(results['test'][1:])[-4000:]
    finally:
        kill_running(procs.values())
    yield root, model, results


@pytest.mark.slow
def test_checkpoint_gets_the_val_temperature_and_keeps_its_weights(runs):
    root, model, _ = runs
    old, new = _load(root / 'cds.pth'), _load(root / 'cds_t.pth')
    record = new['meta']['temperature_scaling']
    assert set(record) == RECORD_KEYS | {
        k.replace('val_', 'test_')
        for k in RECORD_KEYS if k.startswith('val_')
    }
    assert new['meta']['epoch'] == 4 and 'temperature_scaling' not in \
        old['meta']
    assert _losses(new) == _losses(old) == [0.5]
    assert new['optimizer'] == old['optimizer']
    assert set(new['state_dict']) == set(old['state_dict'])
    for k, v in old['state_dict'].items():
        assert torch.equal(new['state_dict'][k], v), k
    # the reference: the same model's val scores, fitted in this process
    logits, labels = _val_logits(model, root)
    assert record['temperature'] == pytest.approx(T_VAL, rel=1e-4)
    assert record['temperature'] == pytest.approx(
        fit_temperature(logits, labels), rel=1e-6)
    assert record['val_num_samples'] == 16 and record['checkpoint'] == \
        'cds.pth'
    for when, t in (('before', 1.0), ('after', record['temperature'])):
        assert record[f'val_nll_{when}'] == pytest.approx(
            temperature_nll(logits, labels, t), rel=1e-6)
    assert record['val_nll_after'] < record['val_nll_before']


@pytest.mark.slow
def test_test_split_is_scaled_by_the_val_temperature(runs):
    """tools/test.py with the printed option reports the scaled test ECE; its
    dumped scores stay the model's own."""
    root, _, results = runs
    record = _load(root / 'cds_t.pth')['meta']['temperature_scaling']
    with open(root / 'test_preds.pkl', 'rb') as f:
        samples = pickle.load(f)
    scores = torch.stack([torch.as_tensor(s['pred_score']) for s in samples])
    labels = torch.tensor([int(s['gt_label']) for s in samples])
    assert record['test_num_samples'] == len(samples) == 48
    logits, t = scores_to_logits(scores), record['temperature']
    assert record['test_nll_before'] == pytest.approx(
        temperature_nll(logits, labels, 1.0), rel=1e-6)
    assert record['test_nll_after'] == pytest.approx(
        temperature_nll(logits, labels, t), rel=1e-6)
    metric = ECEMetric(save_diagram=False)
    metric.process(None, samples)
    assert record['test_ece_before'] == pytest.approx(
        metric.evaluate(len(samples))['calib/ece'], abs=1e-6)
    logged = re.findall(r'calib/ece: ([\d.]+)',
                        results['test'][1] + results['test'][2])
    assert logged and float(logged[-1]) == pytest.approx(
        record['test_ece_after'], abs=1e-4)
    assert record['test_ece_after'] != pytest.approx(
        record['test_ece_before'], abs=1e-3)
    dump = json.loads((root / 'cds_t.json').read_text())
    assert dump['temperature'] == t
    for split, n in (('val', 16), ('test', 48)):
        assert dump['summaries'][split]['temperature'] == t
        for when in ('before', 'after'):
            assert sum(
                dump['summaries'][split][f'reliability_{when}']['count']) == n


@pytest.mark.slow
def test_plain_classifier_gets_the_same_temperature(runs):
    root, _, results = runs
    plain = _load(root / 'calibrated_plain.pth')  # the default --out
    cds = _load(root / 'cds_t.pth')
    assert plain['meta']['temperature_scaling']['temperature'] == \
        pytest.approx(cds['meta']['temperature_scaling']['temperature'],
                      rel=1e-6)
    assert 'test_nll_after' not in plain['meta']['temperature_scaling']
    assert 'test_evaluator.1.temperature=' in results['plain'][1]
