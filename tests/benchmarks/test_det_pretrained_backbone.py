"""The pretrained-backbone chain: which run feeds which, the order of its
steps, and that it repeats no recorded run (no training)."""
import json
import os.path as osp

import pytest
from cds_test_utils import REPO_ROOT, load_tool

chain = load_tool(
    osp.join(REPO_ROOT, 'benchmarks', 'det_pretrained_backbone.py'))


def chain_argv(tmp_path, *extra):
    """The chain's arguments, every file it writes under ``tmp_path``."""
    return [
        '--work-dir',
        str(tmp_path / 'work'), '--results',
        str(tmp_path / 'res.json'), '--mosaic-results',
        str(tmp_path / 'mosaic.json'), '--data-dir',
        str(tmp_path / 'mosaic'), *extra
    ]


def chain_args(tmp_path, *extra):
    return chain.parse_args(chain_argv(tmp_path, *extra))


def option(argv, key):
    """The value of ``--key`` in ``argv``."""
    return argv[argv.index(key) + 1]


def test_seed_k_of_an_arm_feeds_seed_k_of_its_detector(tmp_path):
    args = chain_args(tmp_path)
    for arm, mode in (('ce', 'off'), ('cds', 'cds')):
        pre = chain.pretrain_argv(args, arm, 2)
        assert option(pre, '--modes') == mode
        assert option(pre, '--seeds') == '2'
        assert option(pre, '--config') == chain.PRETRAIN_CONFIG
        det = chain.detect_argv(args, 'faster-rcnn', arm, 2)
        assert option(det, '--seeds') == '2'
        assert option(det, '--config') == chain.DETECTORS['faster-rcnn'][1]
        assert option(det, '--ablation') == f'init-{arm}'
        ckpt = option(det, '--cfg-options').split('=', 1)[1]
        assert ckpt == chain.backbone_file(args, arm, 2)
        assert ckpt.endswith(
            osp.join(f'{mode}_seed2', 'export', 'backbone.pth'))
    # the scratch Faster R-CNN is the multi-class study's baseline run
    det = chain.detect_argv(args, 'faster-rcnn', 'scratch', 1)
    assert option(det, '--config') == chain.DETECTORS['faster-rcnn'][0]
    assert option(det, '--results') == str(tmp_path / 'mosaic.json')
    assert '--ablation' not in det and '--cfg-options' not in det
    # every detection run trains the plain detector (no CDS term)
    assert option(det, '--variants') == 'off'


def test_the_pretrained_config_differs_from_scratch_only_in_init():
    from mmengine.config import Config
    scratch, pretrained = (
        Config.fromfile(osp.join(REPO_ROOT, c), import_custom_modules=False)
        for c in chain.DETECTORS['faster-rcnn'])
    init = pretrained.model.detector.backbone.pop('init_cfg')
    assert (init.type, init.prefix) == ('Pretrained', 'backbone.')
    assert pretrained.model.pop('mode') == 'off'
    scratch.model.pop('mode')
    assert scratch.model.detector.backbone.pop('init_cfg') is None
    assert pretrained.model.to_dict() == scratch.model.to_dict()
    for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler',
                'train_cfg'):
        assert pretrained[key] == scratch[key], key


@pytest.fixture
def fake_steps(monkeypatch):
    """Record the chain's steps instead of training; each detection run's
    mAP is ``10 * seed + {scratch: 0, ce: 1, cds: 3}``."""
    calls = []

    def pretrain(args, arm, seed, tag):
        calls.append(('pretrain', arm, seed))
        return dict(arm=arm, seed=seed, top1=90.0 + (arm == 'cds'))

    def detect(args, detector, init, seed, pre):
        calls.append(('detect', detector, init, seed))
        opts, digest = chain.detect_key(
            chain.detect_argv(args, detector, init, seed))
        row = dict(
            detector=detector,
            init=init,
            seed=seed,
            mAP=10.0 * seed + dict(scratch=0, ce=1, cds=3)[init],
            mAP50=50.0,
            best_epoch=20,
            cfg_options=opts,
            config_digest=digest)
        if pre is not None:
            row['pretrain_top1'] = pre['top1']
        return row

    monkeypatch.setattr(chain, 'pretrain', pretrain)
    monkeypatch.setattr(chain, 'detect', detect)
    return calls


def test_a_call_for_one_detector_keeps_the_others_gaps_and_pairs(
        tmp_path, fake_steps, monkeypatch):
    detect = chain.detect

    def detect_but_seed1(args, detector, init, seed, pre):
        if seed == 1:
            raise RuntimeError('cut short')
        return detect(args, detector, init, seed, pre)

    monkeypatch.setattr(chain, 'detect', detect_but_seed1)
    with pytest.raises(SystemExit, match='3 step'):
        chain.main(chain_argv(tmp_path, '--seeds', '0', '1'))
    monkeypatch.setattr(chain, 'detect', detect)
    chain.main(
        chain_argv(tmp_path, '--seeds', '0', '--detectors', 'retinanet'))
    with open(tmp_path / 'res.json') as f:
        res = json.load(f)
    assert sorted(res['paired']) == ['faster-rcnn', 'retinanet']
    assert res['paired']['faster-rcnn']['cds-ce'] == {'0': 2.0}
    assert res['missing'] == [
        dict(detector='faster-rcnn', init=i, seed=1)
        for i in ('scratch', 'ce', 'cds')
    ]


def test_steps_go_seed_by_seed_and_recorded_runs_are_not_repeated(
        tmp_path, fake_steps):
    args = ['--seeds', '0', '1']
    chain.main(chain_argv(tmp_path, *args))
    seed0 = [('detect', 'faster-rcnn', 'scratch', 0), ('pretrain', 'ce', 0),
             ('pretrain', 'cds', 0), ('detect', 'faster-rcnn', 'ce', 0),
             ('detect', 'faster-rcnn', 'cds', 0)]
    assert fake_steps[:5] == seed0 and len(fake_steps) == 10
    with open(tmp_path / 'res.json') as f:
        res = json.load(f)
    assert res['missing'] == []
    assert res['paired']['faster-rcnn']['cds-ce'] == {'0': 2.0, '1': 2.0}
    assert res['paired']['faster-rcnn']['ce-scratch'] == {'0': 1.0, '1': 1.0}
    assert {(p['arm'], p['seed']) for p in res['pretrain']} == \
        {('ce', 0), ('cds', 0), ('ce', 1), ('cds', 1)}
    # a second call finds every run recorded
    fake_steps.clear()
    chain.main(chain_argv(tmp_path, *args))
    assert fake_steps == []
    # a recorded run made with other options is made again, with its
    # pretraining; the other runs of its seed are not
    with open(tmp_path / 'res.json') as f:
        res = json.load(f)
    cds1 = next(r for r in res['runs']
                if r['init'] == 'cds' and r['seed'] == 1)
    cds1['cfg_options'] = cds1['cfg_options'][:-1]
    with open(tmp_path / 'res.json', 'w') as f:
        json.dump(res, f)
    chain.main(chain_argv(tmp_path, *args))
    assert fake_steps == [('pretrain', 'cds', 1),
                          ('detect', 'faster-rcnn', 'cds', 1)]
