"""Bad input gives a clear error that names the config key and what was
expected.

In-process: tap names, ``in_channels``, view counts, degenerate SupCon batches,
the shipped demo dataloader. In subprocesses (started together when the module
starts, on 12 generated PNGs): ``tools/train.py`` on an empty data set and on a
CDS config without ``custom_imports``, and plain ``Runner.from_cfg`` of that
config in an interpreter that never imports cds_mm. Last, what ``load_from``
does with a checkpoint of another model (``Runner.load_checkpoint``'s own
steps).
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, TRAIN, build_cls,
                            build_det, det_samples, kill_running, popen_python,
                            wait, write_class_pngs)
from mmengine.config import Config
from mmengine.dataset import default_collate, pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)
from mmengine.structures import InstanceData
from mmpretrain.registry import DATASETS, TRANSFORMS
from mmpretrain.structures import DataSample

import cds_mm  # noqa: F401
from cds_mm.models.losses import SupConLoss

CLASSIFIER = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=8,
        base_channels=8,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=4, in_channels=64),
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True))
TAPS = [f'backbone.layer{i}' for i in (1, 2, 3, 4)]

# A CDS classifier that forgets custom_imports (tools/train.py imports cds_mm
# itself). The contrast view keeps ColorJitter(hue=0.1), which needs
# cds_mm.compat's mmcv/numpy-2 shim; no collate_fn, like the shipped configs
# (mmengine's pseudo_collate).
TRAIN_CONFIG = """
default_scope = 'mmpretrain'
model = dict(
    type='CDSClassifier',
    classifier=dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                      out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64, topk=(1, )),
        data_preprocessor=dict(num_classes=3, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)),
    cds_head=dict(type='CDSHead', taps=['backbone.layer2', 'backbone.layer4']))
flip = [dict(type='RandomFlip', prob=0.5)]
colour = [dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)]
pipeline = [dict(type='LoadImageFromFile'),
            dict(type='MultiView', num_views=[1, 1], transforms=[flip, colour]),
            dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=6, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root={data_root!r}, data_prefix='',
                 with_label=True, pipeline=pipeline{extra}))
train_cfg = dict(by_epoch=False, max_iters=1)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False))
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
"""  # noqa: E501

# plain mmengine, in an interpreter where nothing imports cds_mm
RUNNER_CHILD = r'''
import sys
from mmengine.config import Config
from mmengine.runner import Runner
cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = sys.argv[2]
try:
    Runner.from_cfg(cfg)
    print('@@NO_ERROR@@')
except KeyError as e:
    print('@@KEYERROR@@' + str(e))
print('@@CDS_MM_IMPORTED@@', 'cds_mm' in sys.modules)
'''


@pytest.fixture(scope='module', autouse=True)
def runs(tmp_path_factory):
    """PNG data, configs, and the three subprocesses, started with this
    module's first test."""
    root = tmp_path_factory.mktemp('bad_input')
    write_class_pngs(root / 'data')
    (root / 'empty').mkdir()
    (root / 'empty_ann.txt').write_text('')
    cfgs = dict(
        train=TRAIN_CONFIG.format(data_root=str(root / 'data'), extra=''),
        empty_ann=TRAIN_CONFIG.format(
            data_root=str(root / 'data'),
            extra=f", ann_file={str(root / 'empty_ann.txt')!r}"))
    for name, text in cfgs.items():
        (root / f'{name}.py').write_text(text)
    procs = dict(
        train=popen_python(
            TRAIN, root / 'train.py', '--work-dir', root / 'w_train',
            cwd=root),
        empty_ann=popen_python(
            TRAIN,
            root / 'empty_ann.py',
            '--work-dir',
            root / 'w_ea',
            cwd=root),
        runner=popen_python(
            '-c', RUNNER_CHILD, root / 'train.py', root / 'w_runner',
            cwd=root))
    results = {}

    def result(name):
        if name not in results:
            results[name] = wait(procs[name], timeout=300)
        return results[name]

    yield root, result
    kill_running(procs.values())


def _cls(cds_head=None, **kwargs):
    torch.manual_seed(0)
    head = dict(type='CDSHead', taps=TAPS)
    head.update(cds_head or {})
    return build_cls(
        dict(
            type='CDSClassifier',
            classifier=copy.deepcopy(CLASSIFIER),
            cds_head=head,
            **kwargs))


def _views(n=6, k=2):
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(n, 3, 32, 32, generator=g) for _ in range(k)]
    return views, [DataSample().set_gt_label(i % 4) for i in range(n)]


def _det_samples(n=2, size=64):
    samples = det_samples(n, size)
    for s in samples:
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[5., 5., 30., 25.], [35., 10., 60., 45.]]),
            labels=torch.tensor([0, 1]))
    return samples


@pytest.fixture(scope='module')
def det_model_cfg():
    return Config.fromfile(DEMO_DET_CFG).model


def _det(model_cfg, key=None, **changes):
    cfg = copy.deepcopy(model_cfg)
    cfg.probe_size = 64
    if key:
        cfg[key].update(changes)
    torch.manual_seed(0)
    return build_det(cfg)


def _det_loss(model):
    x = {
        b:
        torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(i))
        for i, b in enumerate(('main', 'cds'))
    }
    return model.train().loss(x, {
        'main': _det_samples(),
        'cds': _det_samples()
    })


# ------------------------------------------------------------------ taps and
# in_channels


def test_unknown_tap_classifier():
    with pytest.raises(ValueError) as err:
        _cls(dict(taps=['backbone.layer1', 'backbone.layr2']))
    msg = str(err.value)
    assert msg.startswith(
        "cds_head.taps: 'backbone.layr2' is not a submodule of ImageClassifier"
    )
    assert "'backbone.layer2'" in msg.split('close names:')[1]


@pytest.mark.parametrize('key', ['cds_head', 'instance_head'])
def test_unknown_tap_detector(det_model_cfg, key):
    with pytest.raises(ValueError) as err:
        _det(det_model_cfg, key, taps=['neck.fpn_conv.0'])
    msg = str(err.value)
    assert msg.startswith(
        f"{key}.taps: 'neck.fpn_conv.0' is not a submodule of FasterRCNN")
    assert "'neck.fpn_convs.0'" in msg.split('close names:')[1]


def test_in_channels_count_and_width_classifier():
    with pytest.raises(
            ValueError,
            match=r"cds_head.in_channels has 2 entries for 4 taps"):
        _cls(dict(in_channels=[8, 16]))
    # the true widths are [8, 16, 32, 64]; given channels are trusted until the
    # first loss
    model = _cls(dict(in_channels=[8, 16, 32, 99])).train()
    with pytest.raises(ValueError) as err:
        model.loss(*_views())
    assert str(err.value) == (
        "tap 'backbone.layer4' gave a feature of shape (6, 64, 4, 4), but "
        'cds_head.in_channels says 99 channels (dim 1)')


def test_in_channels_width_detector_cds_head(det_model_cfg):
    model = _det(det_model_cfg, 'cds_head', in_channels=[32, 32, 32, 99])
    with pytest.raises(
            ValueError,
            match=r"tap 'neck.fpn_convs.3' gave a feature of shape "
            r"\(2, 32, 2, 2\), but cds_head.in_channels says 99 channels"):
        _det_loss(model)


def test_in_channels_width_detector_instance_head(det_model_cfg):
    model = _det(det_model_cfg, 'instance_head', in_channels=[99])
    with pytest.raises(
            ValueError,
            match=r"tap 'neck.fpn_convs.0' gave a feature of shape "
            r"\(2, 32, 16, 16\), but instance_head.in_channels says 99"):
        _det_loss(model)


# ------------------------------------------------------------------ views


def test_cds_needs_two_views_classifier():
    model = _cls().train()
    views, samples = _views()
    expect = (
        "mode='cds' needs two views per image: wrap the train pipeline's "
        'transforms in MultiView(num_views=[1, 1], ...)')
    for inputs in (views[0], views[:1]):
        with pytest.raises(ValueError) as err:
            model.loss(inputs, samples)
        assert str(err.value).startswith(expect), err.value
    # the same through train_step, from a single-view pipeline's batch
    data = dict(
        inputs=torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8),
        data_samples=samples)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(ValueError, match=r"needs two views per image"):
        model.train_step(data, optim)
    # DSN needs one view only
    assert torch.isfinite(
        sum(_cls(mode='dsn').train().loss(views[0], samples).values()))


def test_cds_needs_both_branches_detector(det_model_cfg):
    model = _det(det_model_cfg).train()
    expect = (
        'CDSDetector needs the branches {main, cds}: end the train pipeline '
        "with MultiBranch(branch_field=['main', 'cds'], ...)")
    for inputs in (torch.randn(2, 3, 64, 64), {
            'main': torch.randn(2, 3, 64, 64)
    }):
        with pytest.raises(ValueError) as err:
            model.loss(inputs, _det_samples())
        assert str(err.value).startswith(expect), err.value


@pytest.mark.parametrize('collate', [default_collate, pseudo_collate])
@pytest.mark.parametrize('num_views', [[1, 1, 1], [2, 1]])
def test_multiview_with_three_views_is_rejected(num_views, collate):
    """Three views from mmpretrain's MultiView reach CDSClassifier through the
    real path."""
    transforms = [[dict(type='RandomFlip', prob=0.5)]] * len(num_views)
    pipeline = [
        build_cls(
            dict(type='MultiView', num_views=num_views, transforms=transforms),
            TRANSFORMS),
        build_cls(dict(type='PackInputs'), TRANSFORMS)
    ]
    rng = np.random.default_rng(0)
    items = []
    for i in range(4):
        item = dict(
            img=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            gt_label=i % 2)
        for t in pipeline:
            item = t(item)
        items.append(item)
    data = collate(items)
    assert len(data['inputs']) == 3
    model = _cls().train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(ValueError) as err:
        model.train_step(data, optim)
    assert 'MultiView(num_views=[1, 1], ...)' in str(err.value)
    assert 'got list of 3 items' in str(err.value)


# ------------------------------------------------------------------ SupCon
# degenerate batches


def test_supcon_without_positives_is_a_finite_zero():
    # V=1, distinct labels
    feats = F.normalize(torch.randn(5, 1, 8), dim=-1).requires_grad_()
    loss = SupConLoss()(feats, torch.arange(5))
    assert loss.item() == 0.0 and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(feats.grad).all() and not feats.grad.any()
    # a positive for some anchors only: those anchors count, the rest are left
    # out, no NaN
    labels = torch.tensor([0, 0, 1, 2, 3])
    mixed = SupConLoss()(F.normalize(torch.randn(5, 1, 8), dim=-1), labels)
    assert torch.isfinite(mixed) and mixed > 0


def test_supcon_single_sample_batch_warns_or_raises():
    one = F.normalize(torch.randn(1, 2, 8), dim=-1).requires_grad_()
    assert SupConLoss()(one, torch.tensor([3])).item() == 0.0
    with pytest.raises(
            ValueError,
            match=r'needs at least min_samples=2 samples, got a batch of 1'):
        SupConLoss(small_batch='raise')(one, torch.tensor([3]))


# ------------------------------------------------------------------ shipped
# dataloaders


def test_shipped_demo_dataloaders_feed_the_wrapper(runs):
    """The demo sets no collate_fn: mmengine's pseudo_collate hands the wrapper
    per-sample
    lists (mmpretrain's SelfSupDataPreprocessor alone fails on them, in train
    and in val)."""
    root, _ = runs
    cfg = Config.fromfile(DEMO_CLS_CFG)
    model = build_cls(copy.deepcopy(cfg.model))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    for split in ('train', 'val'):
        loader_cfg = copy.deepcopy(cfg[f'{split}_dataloader'])
        loader_cfg.update(
            batch_size=4, num_workers=0, persistent_workers=False)
        # the config's pipeline and collate settings, on PNGs instead of
        # Fashion-MNIST
        loader_cfg.dataset = dict(
            type='CustomDataset',
            data_root=str(root / 'data'),
            data_prefix='',
            with_label=True,
            pipeline=[dict(type='LoadImageFromFile')] +
            list(loader_cfg.dataset.pipeline))
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            data = next(iter(Runner.build_dataloader(loader_cfg)))
        if split == 'train':
            log_vars = model.train_step(data, optim)
            assert all(torch.isfinite(v) for v in log_vars.values())
        else:
            assert len(model.val_step(data)) == 4


# ------------------------------------------------------------------ tools and
# runner


def test_empty_image_folder_is_an_understandable_error(runs):
    root, _ = runs
    cfg = Config.fromfile(str(root / 'train.py'))
    cfg.train_dataloader.dataset.data_root = str(root / 'empty')
    with pytest.raises(
            RuntimeError) as err, DefaultScope.overwrite_default_scope(
                'mmpretrain'):
        DATASETS.build(cfg.train_dataloader.dataset)
    assert str(err.value).startswith(
        f"Found 0 files in subfolders of: {{'img_path': '{root / 'empty'}/'}}"
        '. Supported extensions are: '), err.value
    assert '.png' in str(err.value)


def test_empty_annotation_file_is_an_understandable_error(runs):
    rc, out, err = runs[1]('empty_ann')
    assert rc != 0
    last = err.strip().splitlines()[-1]  # the exception line
    assert 'empty_ann.txt' in last and 'empty' in last.replace(
        'empty_ann', '').lower(), last


def test_tools_train_works_without_custom_imports(runs):
    root, result = runs
    rc, out, err = result('train')
    log = out + err
    assert rc == 0, log[-4000:]
    assert 'Iter(train) [1/1]' in log
    assert 'loss_cds_s0:' in log and 'loss_cds_s1:' in log
    assert (root / 'w_train' / 'iter_1.pth').is_file()


def test_plain_runner_without_cds_mm_names_the_missing_type(runs):
    rc, out, err = runs[1]('runner')
    assert rc == 0, (out + err)[-4000:]
    assert '@@CDS_MM_IMPORTED@@ False' in out
    assert '@@KEYERROR@@' in out, (out + err)[-3000:]
    msg = out.split('@@KEYERROR@@', 1)[1].splitlines()[0]
    assert 'CDSClassifier is not in the mmpretrain::model registry' in msg, msg
    # mmengine's pointer to custom_imports
    assert 'import-the-custom-module' in msg


def _runner_load(model, path):
    """What load_from does: Runner.load_checkpoint's loading steps,
    strict=False."""
    ckpt = _load_checkpoint(str(path), map_location='cpu')
    _load_checkpoint_to_model(
        model, ckpt, strict=False, revise_keys=[(r'^module\.', '')])
    return ckpt


def test_load_from_another_width_warns_and_keeps_the_init(runs, capsys):
    root, result = runs
    assert result('train')[0] == 0
    ckpt_path = root / 'w_train' / 'iter_1.pth'
    cfg = Config.fromfile(str(root / 'train.py'))
    # same stem, wider stages
    cfg.model.classifier.backbone.base_channels = 16
    cfg.model.classifier.head.in_channels = 128
    torch.manual_seed(0)
    model = build_cls(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    capsys.readouterr()
    saved = _runner_load(model, ckpt_path)['state_dict']
    printed = capsys.readouterr().out  # print(), not the run's logger
    assert 'The model and loaded state dict do not match exactly' in printed
    assert (
        'size mismatch for classifier.backbone.layer1.0.conv1.weight: '
        'copying a param with shape torch.Size([8, 8, 3, 3]) from checkpoint, '
        'the shape in current model is torch.Size([16, 8, 3, 3])'
    ) in printed, printed[:3000]
    after = model.state_dict()
    # matching shapes are loaded, mismatching ones silently keep their
    # initialisation
    assert torch.equal(after['classifier.backbone.conv1.weight'],
                       saved['classifier.backbone.conv1.weight'])
    assert torch.equal(after['classifier.backbone.layer1.0.conv1.weight'],
                       before['classifier.backbone.layer1.0.conv1.weight'])


def test_load_from_a_plain_classifier_checkpoint(tmp_path, capsys):
    torch.manual_seed(1)
    plain = build_cls(copy.deepcopy(CLASSIFIER))
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    model = _cls()
    _runner_load(model, path)
    printed = capsys.readouterr().out
    assert 'missing keys in source state_dict: classifier.' not in printed
    for k, v in plain.state_dict().items():
        assert torch.equal(model.classifier.state_dict()[k], v), k
