"""cds_mm.compat: each stack shim is needed, works, and keeps torch's safe
loading on."""
import math
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper
from mmengine.runner import Runner
from torch.utils.data import Dataset

import cds_mm.compat  # noqa: F401  (the opt-in fixes)
from cds_mm import compat

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class _TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.fc(torch.stack(inputs))
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


class _TinyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)))


class _Evil:
    """Unpickling it would call ``print``: an arbitrary global the safe loader
    must refuse."""

    def __reduce__(self):
        return print, ('unsafe global executed', )


class _GetattrGadget:
    """Pickles as ``getattr(numpy.ndarray, 'tofile')``: ``builtins.getattr``
    misused."""

    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory):
    """A checkpoint the mmengine Runner itself saved (message_hub with
    HistoryBuffer, numpy)."""
    work_dir = tmp_path_factory.mktemp('runner')
    runner = Runner(
        model=_TinyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_TinyData(),
            batch_size=2,
            sampler=dict(type='DefaultSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=dict(
            type='MultiStepLR', by_epoch=False, milestones=[1]),
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)))
    runner.train()
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.is_file()
    return str(ckpt)


def test_runner_checkpoint_needs_the_shim(runner_ckpt):
    # a fresh interpreter that never imports cds_mm: torch's default safe load
    # refuses it, the same interpreter loads it once cds_mm.compat is imported
    code = ('import sys, torch\n'
            'try:\n'
            '    torch.load(sys.argv[1], weights_only=True)\n'
            '    print("BEFORE: loaded")\n'
            'except Exception as e:\n'
            '    print("BEFORE: refused", type(e).__name__)\n'
            'assert "cds_mm" not in sys.modules\n'
            'import cds_mm.compat\n'
            'ck = torch.load(sys.argv[1])\n'
            'buf = ck["message_hub"]["log_scalars"]["train/loss"]\n'
            'print("AFTER: loaded", type(buf).__name__, len(buf.data[0]))\n')
    proc = subprocess.run([sys.executable, '-c', code, runner_ckpt],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'BEFORE: refused UnpicklingError' in proc.stdout, proc.stdout
    assert 'AFTER: loaded HistoryBuffer 2' in proc.stdout, proc.stdout


def test_no_unsafe_globals_left(runner_ckpt):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        runner_ckpt) == []
    ck = torch.load(runner_ckpt, map_location='cpu')
    buf = ck['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    log, count = buf.data
    assert log.dtype == np.float64 and count.tolist() == [1, 1]
    assert buf.statistics('mean') == pytest.approx(log.mean())


def test_safe_loading_still_refuses_arbitrary_globals(tmp_path, capfd):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError, match='builtins.print|print'):
        torch.load(path)
    assert 'unsafe global executed' not in capfd.readouterr().out


def test_getattr_is_restricted_to_history_buffer(tmp_path):
    path = tmp_path / 'gadget.pth'
    torch.save({'x': _GetattrGadget()}, path)
    with pytest.raises(
            pickle.UnpicklingError, match='only allowed on HistoryBuffer'):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError, match='not a public method'):
        compat._history_buffer_getattr(HistoryBuffer, '__init__')
    assert compat._history_buffer_getattr(HistoryBuffer,
                                          'mean') is HistoryBuffer.mean


def test_object_arrays_stay_refused(tmp_path):
    path = tmp_path / 'obj.pth'
    torch.save({'x': np.array([_Evil()], dtype=object)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_numpy1_module_paths_are_registered():
    names = {name for _, name in compat.mmengine_checkpoint_globals()}
    assert {
        'numpy.core.multiarray._reconstruct',
        'numpy._core.multiarray._reconstruct', 'numpy.core.multiarray.scalar',
        'numpy.dtypes.Float64DType', 'numpy.dtypes.Int64DType'
    } <= names
    assert 'numpy.dtypes.ObjectDType' not in names


def test_apply_all_is_idempotent():
    import mmcv
    from mmcv.ops import RoIAlign
    from mmcv.ops.nms import NMSop

    def patched():
        return (AmpOptimWrapper.__init__, mmcv.adjust_hue, NMSop.forward,
                RoIAlign.forward, len(torch.serialization.get_safe_globals()))

    before = patched()
    # every shim is applied once
    assert all(hasattr(f, '__wrapped__') for f in before[:4])
    compat.apply_all()
    compat.apply_all()
    assert patched() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU AMP path only')
def test_cpu_amp_optim_wrapper_bf16_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    wrapper = AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loss_scale='dynamic',
        dtype='bfloat16')
    before = model[0].weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(6, 4))
        # autocast really ran in bf16
        assert out.dtype == torch.bfloat16
        loss = out.float().pow(2).mean()
    wrapper.update_params(loss)
    assert math.isfinite(loss.item())
    # the step happened, unscaled
    assert not torch.equal(before, model[0].weight)
    state = wrapper.state_dict()
    wrapper.load_state_dict(state)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU AMP path only')
def test_cpu_amp_optim_wrapper_rejects_fp16():
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match='bfloat16 only'):
        AmpOptimWrapper(optimizer=opt, dtype='float16')


def test_mmcv_adjust_hue_negative_shift_under_numpy2():
    import cv2
    import mmcv
    from mmcv.image import photometric
    original = mmcv.adjust_hue.__wrapped__
    assert photometric.adjust_hue is mmcv.adjust_hue is not original
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 2] = 255  # BGR red: hue 0
    if int(np.__version__.split('.')[0]) >= 2:
        # the upstream bug the shim exists for
        with pytest.raises(OverflowError):
            original(red, -0.1)
    # numpy 1 semantics: shift int(-0.1 * 255) = -25 wraps to 231
    expected = cv2.cvtColor(
        np.array([[[231, 255, 255]]], np.uint8), cv2.COLOR_HSV2BGR_FULL)
    for backend in ('cv2', 'pillow'):
        out = mmcv.adjust_hue(red, -0.1, backend=backend)
        assert out.dtype == np.uint8 and (out
                                          == expected[0, 0]).all(), (backend,
                                                                     out[0, 0])
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        mmcv.adjust_hue(img, 0.3), original(img, 0.3))
    with pytest.raises(ValueError):
        mmcv.adjust_hue(img, -0.6)


def test_mmpretrain_color_jitter_with_hue_runs():
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import TRANSFORMS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        jitter = TRANSFORMS.build(
            dict(
                type='ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.4,
                hue=0.1))
    img = np.random.default_rng(0).integers(
        0, 256, (16, 16, 3), dtype=np.uint8)
    # ~half draw a negative hue shift
    for seed in range(12):
        np.random.seed(seed)
        assert jitter(dict(img=img.copy()))['img'].shape == (16, 16, 3)


def test_mmcv_cpu_ops_accept_bf16():
    from mmcv.ops import RoIAlign, nms
    from mmcv.ops.nms import NMSop
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(20, 2, generator=g) * 20],
                      dim=1)
    scores = torch.rand(20, generator=g)
    with pytest.raises(
            RuntimeError, match='BFloat16'):  # mmcv 2.1.0's CPU kernel alone
        NMSop.forward.__wrapped__(None, boxes.bfloat16(), scores.bfloat16(),
                                  0.5, 0, 0, -1)
    b16, s16 = boxes.bfloat16(), scores.bfloat16()
    dets, keep = nms(b16, s16, 0.5)
    ref_dets, ref_keep = nms(b16.float(), s16.float(), 0.5)
    assert dets.dtype == torch.bfloat16 and torch.equal(
        keep, ref_keep) and len(keep) < 20
    feats = torch.randn(1, 4, 16, 16, generator=g)
    rois = torch.tensor([[0., 1., 1., 9., 9.], [0., 4., 2., 15., 12.]])
    align = RoIAlign(output_size=3, spatial_scale=1.0, sampling_ratio=2)
    ref = align(feats, rois)
    x = feats.bfloat16().requires_grad_()
    out = align(x, rois.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape == (2, 4, 3,
                                                                      3)
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.02)
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16
    assert x.grad.abs().sum() > 0


def test_mmdet_base_config_loads_offline_and_builds(tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg_file = tmp_path / 'frcnn.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'\n"
        "model = dict(backbone=dict(init_cfg=None))\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'FasterRCNN'
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'FasterRCNN'
    assert model.backbone.depth == 50
    assert model.roi_head.bbox_head.num_classes == 80


def test_each_fix_stays_off_outside_the_versions_it_fixes():
    # a fresh interpreter that pretends to have newer mmengine / mmcv / torch
    code = (
        'import mmcv, mmengine, torch, mmdet.models, mmpretrain.models\n'
        'mmengine.__version__ = "0.11.0"\n'
        'mmcv.__version__ = "2.2.0"\n'
        'torch.__version__ = "2.5.1"\n'
        'safe = len(torch.serialization.get_safe_globals())\n'
        'import cds_mm.compat\n'
        'from mmengine.dataset import BaseDataset\n'
        'from mmengine.fileio.backends.local_backend import LocalBackend\n'
        'from mmengine.optim import AmpOptimWrapper\n'
        'from mmcv.ops import RoIAlign\n'
        'patched = [f.__qualname__ for f in (\n'
        '    AmpOptimWrapper.__init__, LocalBackend.put, RoIAlign.forward,\n'
        '    BaseDataset.full_init, mmcv.adjust_hue)\n'
        '    if hasattr(f, "__wrapped__")]\n'
        'print("PATCHED", patched,\n'
        '      len(torch.serialization.get_safe_globals()) - safe)\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'PATCHED [] 0' in proc.stdout, proc.stdout
