"""Upstream OpenMMLab tools on our configs, run unchanged from the wheels.

mmpretrain: ``vis_tsne.py``, ``get_flops.py``, ``browse_dataset.py``,
``FeatureExtractor`` and ``ImageClassificationInferencer``; mmdet:
``get_flops.py``, ``browse_dataset.py`` and ``analyze_logs.py``. Each runs
on a shipped demo config (data pointed at tiny generated sets with
``--cfg-options``) or on a CDS checkpoint of a 2-iteration demo run, and its
output is checked against the plain model: the CDS wrapper must be
invisible to the tools. The command-line tools of one library run one after
another in one subprocess, so that the imports are paid once.
"""
import json
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, REPO_ROOT, build_cls,
                            cls_data_cfg, cpu_env, finish, popen_train,
                            tiny_cfg, write_demo_data)
from mmengine.config import Config
from PIL import Image

DEMO = osp.join(REPO_ROOT, 'configs', 'demo')
CLS_OFF_CFG = osp.join(DEMO, 'resnet18-w16_baseline_1xb128_fashionmnist.py')
DET_PLAIN_CFG = osp.join(DEMO, 'faster-rcnn_r18-w16_fpn_shapes_plain.py')
ENV = cpu_env(MPLBACKEND='Agg')
# the documented opt-in for upstream tools: registration plus the stack
# shims (loading an mmengine checkpoint under torch's weights_only default,
# the colour recipe's hue shift under numpy 2)
OPT_IN = ("custom_imports = dict(imports=['cds_mm', 'cds_mm.compat'], "
          'allow_failed_imports=False)\n')
# runs upstream scripts one after another; a failed run prints its
# traceback and '### failed', and the next one still runs
RUN_MANY = """
import json, runpy, sys, traceback
for tool, argv in json.loads(sys.argv[1]):
    print('### run', flush=True)
    sys.argv = [tool] + argv
    try:
        runpy.run_path(tool, run_name='__main__')
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        print('### failed', flush=True)
    sys.stdout.flush()
"""


def _tool(package, path):
    """An upstream script shipped in ``package``'s wheel (``.mim/tools``)."""
    mod = __import__(package)
    return osp.join(osp.dirname(mod.__file__), '.mim', 'tools', path)


def _run(args, cwd):
    proc = subprocess.run([sys.executable, *map(str, args)],
                          cwd=str(cwd),
                          env=ENV,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def _run_many(runs, cwd):
    """Each run's output, for ``runs`` = ``{name: (tool, argv)}``."""
    runs = {k: (t, list(map(str, a))) for k, (t, a) in runs.items()}
    out = _run(['-c', RUN_MANY, json.dumps(list(runs.values()))], cwd)
    parts = out.split('### run\n')[1:]
    assert len(parts) == len(runs), out[-4000:]
    return dict(zip(runs, parts))


def _ok(part):
    assert '### failed' not in part, part[-4000:]
    return part


def _flops_and_params(part):
    """``(flops, params)`` as get_flops.py prints them."""
    found = [
        re.search(rf'^{k}: (\S+)$', _ok(part), re.M)
        for k in ('Flops', 'Params')
    ]
    assert all(found), part[-4000:]
    return tuple(f.group(1) for f in found)


# ------------------------------------------------------------ fixtures


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """``fmnist`` (IDX files) and ``shapes`` (COCO) under one folder."""
    root = tmp_path_factory.mktemp('upstream_data')
    write_demo_data(root)
    return root


@pytest.fixture(scope='module')
def opt_in(tmp_path_factory):
    """The demo configs as a user of upstream tools runs them, opted in."""
    root = tmp_path_factory.mktemp('upstream_cfg')
    cfgs = {}
    for name, base in (('cls', DEMO_CLS_CFG), ('det', DEMO_DET_CFG)):
        cfgs[name] = root / f'{name}.py'
        cfgs[name].write_text(f'_base_ = {base!r}\n' + OPT_IN)
    cfgs['plain_cls'] = root / 'plain_cls.py'
    cfgs['plain_cls'].write_text(
        f'_base_ = {DEMO_CLS_CFG!r}\n'
        'model = dict(_delete_=True, **_base_.classifier)\n')
    return cfgs


@pytest.fixture(scope='module')
def cls_run(data, tmp_path_factory):
    """The demo CDS classifier trained 2 iterations: config, checkpoint,
    scalars.json."""
    root = tmp_path_factory.mktemp('upstream_cls')
    cfg = root / 'cds_cls.py'
    cfg.write_text(
        tiny_cfg(DEMO_CLS_CFG, iters=2) + cls_data_cfg(str(data / 'fmnist')) +
        OPT_IN)
    finish(popen_train(cfg, root / 'work'))
    (scalars, ) = (root / 'work').glob('*/vis_data/scalars.json')
    return cfg, root / 'work' / 'iter_2.pth', scalars


@pytest.fixture(scope='module')
def plain_cls(cls_run):
    """The plain classifier of the config, with the checkpoint's weights."""
    cfg, ckpt, _ = cls_run
    model = build_cls(Config.fromfile(str(cfg)).model.classifier)
    state = torch.load(
        ckpt, map_location='cpu', weights_only=False)['state_dict']
    model.load_state_dict(
        {
            k[len('classifier.'):]: v
            for k, v in state.items() if k.startswith('classifier.')
        },
        strict=True)
    return model.eval()


@pytest.fixture(scope='module')
def mmpretrain_cli(data, opt_in, cls_run, tmp_path_factory):
    """mmpretrain's get_flops.py, browse_dataset.py and vis_tsne.py."""
    root = tmp_path_factory.mktemp('upstream_mmpretrain')
    flops = _tool('mmpretrain', 'analysis_tools/get_flops.py')
    browse = _tool('mmpretrain', 'visualization/browse_dataset.py')
    browse_args = [
        '--not-show', '--show-number', 2, '--mode', 'transformed',
        '--cfg-options', f'train_dataloader.dataset.data_root={data}/fmnist',
        'train_dataloader.dataset.val_size=8',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ]
    cfg, ckpt, _ = cls_run
    parts = _run_many(
        {
            'flops_cds': (flops, [DEMO_CLS_CFG, '--shape', 28]),
            'flops_off': (flops, [CLS_OFF_CFG, '--shape', 28]),
            'flops_plain': (flops, [opt_in['plain_cls'], '--shape', 28]),
            'browse_two': (browse, [opt_in['cls'], '-o', 'two', *browse_args]),
            # the baseline: MultiView giving view 1 only
            'browse_one': (browse, [
                opt_in['cls'], '-o', 'one', *browse_args,
                'train_dataloader.dataset.pipeline.0.num_views=[1,0]'
            ]),
            'tsne': (_tool('mmpretrain', 'visualization/vis_tsne.py'), [
                cfg, '--checkpoint', ckpt, '--work-dir', 'tsne', '--device',
                'cpu', '--max-num-samples', 100, '--perplexity', 5, '--n-iter',
                250
            ]),
        },
        root)
    return root, parts


@pytest.fixture(scope='module')
def mmdet_cli(data, opt_in, tmp_path_factory):
    """mmdet's get_flops.py and browse_dataset.py."""
    root = tmp_path_factory.mktemp('upstream_mmdet')
    flops = _tool('mmdet', 'analysis_tools/get_flops.py')

    def on_data(loader):
        return [
            f'{loader}.dataset.data_root={data}/shapes/',
            f'{loader}.num_workers=0', f'{loader}.persistent_workers=False'
        ]

    val = ['--num-images', 1, '--cfg-options', *on_data('val_dataloader')]
    parts = _run_many(
        {
            'flops_cds': (flops, [DEMO_DET_CFG, *val]),
            'flops_off': (flops, [DEMO_DET_CFG, *val, 'model.mode=off']),
            'flops_plain': (flops, [DET_PLAIN_CFG, *val]),
            'browse': (_tool('mmdet', 'analysis_tools/browse_dataset.py'), [
                opt_in['det'], '--output-dir', 'browse', '--not-show',
                '--cfg-options', *on_data('train_dataloader'),
                'train_dataloader.dataset.pipeline.4.type='
                'MultiBranchSideBySide'
            ]),
        }, root)
    return root, parts


@torch.no_grad()
def _plain_feats(model, images):
    """Neck features of the plain classifier: (N, C)."""
    batch = model.data_preprocessor({'inputs': images}, False)['inputs']
    (feats, ) = model.extract_feat(batch)
    return feats


# ------------------------------------------------------------ mmpretrain


def test_vis_tsne_on_cds_checkpoint(mmpretrain_cli, cls_run, plain_cls):
    root, parts = mmpretrain_cli
    _ok(parts['tsne'])
    (out_dir, ) = (root / 'tsne').glob('tsne_*')
    assert (out_dir / 'feat_3.png').is_file()
    got = np.load(out_dir / 'feat_3.npy')  # every test image, in order

    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(str(cls_run[0]))
    # other tests' Runners may have left another default scope current
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    images = [dataset[i]['inputs'] for i in range(len(dataset))]
    want = _plain_feats(plain_cls, images).numpy()
    assert got.shape == want.shape == (len(dataset), 128)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_feature_extractor_and_inferencer_on_cds_checkpoint(
        cls_run, plain_cls):
    from mmpretrain.apis import FeatureExtractor, ImageClassificationInferencer
    cfg, ckpt, _ = cls_run
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (28, 28, 3), dtype=np.uint8) for _ in range(4)
    ]
    tensors = [torch.from_numpy(img).permute(2, 0, 1) for img in images]

    from mmengine.registry import DefaultScope

    # as in a fresh process: other tests' Runners may have left another
    # default scope current
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        extractor = FeatureExtractor(
            str(cfg), pretrained=str(ckpt), device='cpu')
        got = torch.stack([f[0] for f in extractor(images, batch_size=4)])
        torch.testing.assert_close(got, _plain_feats(plain_cls, tensors))

        inferencer = ImageClassificationInferencer(
            str(cfg), pretrained=str(ckpt), device='cpu')
        got = np.stack([r['pred_scores'] for r in inferencer(images)])
    with torch.no_grad():
        data = plain_cls.data_preprocessor({'inputs': tensors}, False)
        want = torch.stack(
            [s.pred_score for s in plain_cls.predict(data['inputs'])]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_mmpretrain_get_flops_reports_the_plain_model(mmpretrain_cli):
    parts = mmpretrain_cli[1]
    cds, off, plain = (
        _flops_and_params(parts[k])
        for k in ('flops_cds', 'flops_off', 'flops_plain'))
    assert cds[0] == off[0] == plain[0]  # FLOPs of extract_feat
    # the deployed model is mode='off', which builds no CDS projectors (this
    # tool takes no --cfg-options: the demo's *_base_* config sets it)
    assert off[1] == plain[1]


def test_mmpretrain_browse_dataset_shows_both_views(mmpretrain_cli):
    root, parts = mmpretrain_cli
    aspect = {}
    for name in ('two', 'one'):
        _ok(parts[f'browse_{name}'])
        files = sorted((root / name).iterdir())
        assert len(files) == 2
        aspect[name] = [h / w for w, h in (Image.open(f).size for f in files)]
    # the two views stacked in one column: about twice as tall for its width
    for two, one in zip(aspect['two'], aspect['one']):
        assert two > 1.8 * one, aspect


# ------------------------------------------------------------ mmdet


def test_mmdet_get_flops_reports_the_plain_model(mmdet_cli):
    parts = mmdet_cli[1]
    cds, off, plain = (
        _flops_and_params(parts[k])
        for k in ('flops_cds', 'flops_off', 'flops_plain'))
    assert cds[0] == off[0] == plain[0]
    assert off[1] == plain[1]  # model.mode=off: no CDS heads


def test_mmdet_browse_dataset_shows_both_branches(mmdet_cli):
    root, parts = mmdet_cli
    _ok(parts['browse'])
    files = sorted((root / 'browse').iterdir())
    assert len(files) == 16
    # 64 px images resized to 128: main | 4 px gap | cds
    assert {Image.open(f).size for f in files} == {(2 * 128 + 4, 128)}


def _branch_results():
    """What LoadImageFromFile + LoadAnnotations give for a 20 x 30 image."""
    from mmdet.structures.bbox import HorizontalBoxes
    rng = np.random.default_rng(0)
    return dict(
        img=rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        img_path='a.png',
        img_id=0,
        img_shape=(20, 30),
        ori_shape=(20, 30),
        gt_bboxes=HorizontalBoxes(
            torch.tensor([[2., 3., 12., 15.], [20., 1., 29., 9.]])),
        gt_bboxes_labels=np.array([0, 2]),
        gt_ignore_flags=np.array([False, False]))


def test_side_by_side_packs_every_branch():
    from mmdet.datasets.transforms import MultiBranch
    from mmdet.registry import TRANSFORMS
    from mmengine.registry import DefaultScope

    from cds_mm.datasets.transforms import MultiBranchSideBySide
    branches = dict(
        branch_field=['main', 'cds'],
        main=[dict(type='PackDetInputs')],
        cds=[
            dict(type='Resize', scale=(24, 16), keep_ratio=False),
            dict(type='PackDetInputs')
        ])
    with DefaultScope.overwrite_default_scope('mmdet'):
        side = TRANSFORMS.build(
            dict(type='MultiBranchSideBySide', gap=4, **branches))
        ref = MultiBranch(**branches)(_branch_results())
    assert isinstance(side, MultiBranchSideBySide)
    out = side(_branch_results())
    main, cds = ref['inputs']['main'], ref['inputs']['cds']
    assert main.shape == (3, 20, 30) and cds.shape == (3, 16, 24)
    canvas = out['inputs']
    assert canvas.shape == (3, 20, 30 + 4 + 24)
    assert torch.equal(canvas[:, :, :30], main)
    assert torch.equal(canvas[:, :16, 34:], cds)
    assert (canvas[:, :, 30:34] == 255).all()  # the gap
    assert (canvas[:, 16:, 34:] == 255).all()  # below the shorter view
    sample = out['data_samples']
    assert sample.img_path == 'a.png' and sample.img_shape == (20, 58)
    boxes = [ref['data_samples'][b].gt_instances for b in ('main', 'cds')]
    shift = torch.tensor([34., 0., 34., 0.])
    torch.testing.assert_close(
        sample.gt_instances.bboxes.tensor,
        torch.cat([boxes[0].bboxes.tensor, boxes[1].bboxes.tensor + shift]))
    assert sample.gt_instances.labels.tolist() == [0, 2, 0, 2]
    with pytest.raises(ValueError, match='gap'):
        MultiBranchSideBySide(gap=-1, **branches)


def test_mmdet_analyze_logs_plots_cds_losses(cls_run, tmp_path):
    _, _, scalars = cls_run
    keys = ['loss_cds_s0', 'loss_cds_s3', 'loss_cls']
    out = _run([
        _tool('mmdet',
              'analysis_tools/analyze_logs.py'), 'plot_curve', scalars,
        '--keys', *keys, '--backend', 'Agg', '--out', tmp_path / 'curve.png'
    ], tmp_path)
    for key in keys:
        assert f'metric is {key}' in out
    assert Image.open(tmp_path / 'curve.png').size[0] > 100
    with open(osp.join(REPO_ROOT, 'requirements', 'optional.txt')) as f:
        assert re.search(r'^seaborn', f.read(), re.M)
