"""CheckFiniteLossHook: a NaN loss stops the run at its iteration, names the
key, and leaves the last good checkpoint as the last one written."""
import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from cds_test_utils import REPO_ROOT
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint
from torch.utils.data import Dataset

from cds_mm.engine.hooks import CheckFiniteLossHook

PIECE = osp.join(REPO_ROOT, 'configs', '_base_', 'cds', 'check_finite_loss.py')
NAN_AT = 3  # 1-based, as the log counts


class NaNAt(BaseModel):
    """A linear model whose ``loss_cds_s1`` is NaN at call ``nan_at``."""

    def __init__(self, nan_at=NAN_AT):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.nan_at = nan_at
        self.calls = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.calls += 1
        out = inputs @ self.w
        if mode != 'loss':
            return out
        bad = float('nan') if self.calls == self.nan_at else 0.0
        return dict(
            loss_task=(out - 1).pow(2).mean(),
            loss_cds_s1=0.1 * self.w.pow(2).sum() + bad)


class Points(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([float(i), 1.0]))


def run_to_nan(work_dir):
    """Train ``NaNAt`` with the shipped piece's hooks; returns the error."""
    piece = Config.fromfile(PIECE)
    runner = Runner(
        model=NaNAt(),
        work_dir=str(work_dir),
        experiment_name=f'nan_{osp.basename(work_dir)}',
        train_dataloader=dict(
            dataset=Points(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=6),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=1)),
        custom_hooks=piece.custom_hooks)
    with pytest.raises(FloatingPointError) as err:
        runner.train()
    return str(err.value)


def test_nan_at_k_stops_at_k_and_keeps_last_good_checkpoint(tmp_path):
    msg = run_to_nan(tmp_path)
    assert f'iteration {NAN_AT} ' in msg
    assert 'loss_cds_s1=nan' in msg and 'loss_task' not in msg
    saved = sorted(osp.basename(p) for p in glob.glob(str(tmp_path / '*.pth')))
    assert saved == [f'iter_{i}.pth' for i in range(1, NAN_AT)]
    last = tmp_path / f'iter_{NAN_AT - 1}.pth'
    assert str(last) in msg
    model = NaNAt()
    ckpt = load_checkpoint(model, str(last), map_location='cpu', strict=True)
    assert ckpt['meta']['iter'] == NAN_AT - 1
    assert torch.isfinite(model.w).all() and not torch.equal(
        model.w.detach(), torch.ones(2))  # trained, and finite


def test_finite_losses_pass_and_numbers_are_checked():
    hook = CheckFiniteLossHook()
    runner = SimpleNamespace(
        iter=4,
        epoch=0,
        message_hub=MessageHub.get_instance('test_check_finite'))
    hook.after_train_iter(
        runner,
        0,
        outputs=dict(
            loss=torch.tensor(1.0), loss_x=torch.tensor(0.5),
            acc=float('nan')))
    with pytest.raises(
            FloatingPointError,
            match=r'iteration 5 \(epoch 1, batch 2 .*loss_y=inf'):
        hook.after_train_iter(
            runner,
            1,
            outputs=dict(loss=torch.tensor(1.0), loss_y=float('inf')))


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_built_in_both_scopes(scope):
    from mmengine.registry import HOOKS
    with DefaultScope.overwrite_default_scope(scope):
        hook = HOOKS.build(dict(type='CheckFiniteLossHook'))
    assert isinstance(hook, CheckFiniteLossHook)


# plain mmdet detectors with a CDS-pretrained backbone, meant to run without
# cds_mm (tests/configs checks that): they cannot name our hook
UPSTREAM_ONLY = [
    osp.join('cds_detection', f'{det}_r50_fpn_cds-pretrained_1x_coco.py')
    for det in ('faster-rcnn', 'retinanet')
]


def shipped_configs():
    paths = glob.glob(
        osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
    return sorted(p for p in paths if '_base_' not in p and osp.relpath(
        p, osp.join(REPO_ROOT, 'configs')) not in UPSTREAM_ONLY)


@pytest.mark.parametrize(
    'path', shipped_configs(), ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_every_shipped_config_checks_losses(path):
    cfg = Config.fromfile(path)
    types = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert types.count('CheckFiniteLossHook') == 1, types
    assert 'cds_mm' in cfg.custom_imports['imports']
    if cfg.model.get('type') == 'CDSDetector':  # CDS weight warm-up
        assert 'CDSWeightHook' in types, types
