"""cds_mm.compat: each stack shim is needed, works, and keeps torch's safe loading on."""
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

import cds_mm  # noqa: F401  (applies the shims)
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
    """Unpickling it would call ``print``: an arbitrary global the safe loader must refuse."""

    def __reduce__(self):
        return print, ('unsafe global executed', )


class _GetattrGadget:
    """Pickles as ``getattr(numpy.ndarray, 'tofile')``: ``builtins.getattr`` misused."""

    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory):
    """A checkpoint the mmengine Runner itself saved (message_hub with HistoryBuffer, numpy)."""
    work_dir = tmp_path_factory.mktemp('runner')
    runner = Runner(
        model=_TinyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_TinyData(), batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', by_epoch=False, milestones=[1]),
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)))
    runner.train()
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.is_file()
    return str(ckpt)


def test_runner_checkpoint_needs_the_shim(runner_ckpt):
    # a fresh interpreter that never imports cds_mm: torch's default safe load refuses it,
    # the same interpreter loads it once cds_mm.compat is imported
    code = (
        'import sys, torch\n'
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
    proc = subprocess.run([sys.executable, '-c', code, runner_ckpt], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'BEFORE: refused UnpicklingError' in proc.stdout, proc.stdout
    assert 'AFTER: loaded HistoryBuffer 2' in proc.stdout, proc.stdout


def test_no_unsafe_globals_left(runner_ckpt):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(runner_ckpt) == []
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
    with pytest.raises(pickle.UnpicklingError, match='only allowed on HistoryBuffer'):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError, match='not a public method'):
        compat._history_buffer_getattr(HistoryBuffer, '__init__')
    assert compat._history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean


def test_object_arrays_stay_refused(tmp_path):
    path = tmp_path / 'obj.pth'
    torch.save({'x': np.array([_Evil()], dtype=object)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_numpy1_module_paths_are_registered():
    names = {name for _, name in compat.mmengine_checkpoint_globals()}
    assert {'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct',
            'numpy.core.multiarray.scalar', 'numpy.dtypes.Float64DType',
            'numpy.dtypes.Int64DType'} <= names
    assert 'numpy.dtypes.ObjectDType' not in names


def test_apply_all_is_idempotent():
    init = AmpOptimWrapper.__init__
    n_safe = len(torch.serialization.get_safe_globals())
    compat.apply_all()
    compat.apply_all()
    assert AmpOptimWrapper.__init__ is init
    assert len(torch.serialization.get_safe_globals()) == n_safe


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU AMP path only')
def test_cpu_amp_optim_wrapper_bf16_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                              loss_scale='dynamic', dtype='bfloat16')
    before = model[0].weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(6, 4))
        assert out.dtype == torch.bfloat16           # autocast really ran in bf16
        loss = out.float().pow(2).mean()
    wrapper.update_params(loss)
    assert math.isfinite(loss.item())
    assert not torch.equal(before, model[0].weight)  # the step happened, unscaled
    state = wrapper.state_dict()
    wrapper.load_state_dict(state)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU AMP path only')
def test_cpu_amp_optim_wrapper_rejects_fp16():
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match='bfloat16 only'):
        AmpOptimWrapper(optimizer=opt, dtype='float16')


def test_mmdet_base_config_loads_offline_and_builds(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS
    cfg_file = tmp_path / 'frcnn.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'\n"
        "model = dict(backbone=dict(init_cfg=None))\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'FasterRCNN'
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'FasterRCNN'
    assert model.backbone.depth == 50 and model.roi_head.bbox_head.num_classes == 80
