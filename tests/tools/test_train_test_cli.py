"""tools/train.py and tools/test.py end to end on a tiny mmpretrain classifier
(CPU).

One 2-iteration training run is shared; resume, load_from, test --out and --amp
each run the real CLI in a subprocess, with torch's default safe loading
(weights_only=True) left on.
"""
import os
import os.path as osp
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cds_test_utils import TEST, TRAIN, load_tool, write_class_pngs
from mmengine.config import Config

from cds_mm.utils.tool_args import latest_checkpoint

# no custom_imports on purpose: the tools must import cds_mm themselves
CONFIG = """
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=64, topk=(1, ),
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=3, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
dataset = dict(type='CustomDataset', data_root={data_root!r}, data_prefix='', with_label=True,
               pipeline=pipeline)
train_dataloader = dict(batch_size=4, num_workers=0, dataset=dataset,
                        sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(batch_size=6, num_workers=0, dataset=dataset,
                      sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
train_cfg = dict(by_epoch=False, max_iters=2, val_interval=100)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[3], gamma=0.1)
default_hooks = dict(
    timer=dict(type='IterTimerHook'), logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
log_level = 'INFO'
load_from = None
resume = False
"""  # noqa: E501


def _run(*args, cwd):
    proc = subprocess.run([sys.executable, *map(str, args)],
                          cwd=str(cwd),
                          capture_output=True,
                          text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _losses(log):
    return [
        float(v)
        for v in re.findall(r'Iter\(train\).*?\sloss: ([-\w.+]+)', log)
    ]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """12 PNGs (3 classes x 4), the config, and a 2-iteration training run."""
    root = tmp_path_factory.mktemp('cli')
    write_class_pngs(root / 'data')
    cfg = root / 'tiny_cls.py'
    cfg.write_text(CONFIG.format(data_root=str(root / 'data')))
    log = _run(TRAIN, cfg, '--work-dir', root / 'work', cwd=root)
    return root, cfg, log


def test_train_writes_checkpoint(trained):
    root, _, log = trained
    assert (root / 'work' / 'iter_2.pth').is_file()
    assert (root / 'work' / 'last_checkpoint').is_file()
    losses = _losses(log)
    assert len(losses) == 2 and all(np.isfinite(losses)), log[-3000:]


def test_resume_auto_continues(trained, tmp_path):
    root, cfg, _ = trained
    work = tmp_path / 'work'
    shutil.copytree(root / 'work', work)
    log = _run(
        TRAIN,
        cfg,
        '--work-dir',
        work,
        '--resume',
        '--cfg-options',
        'train_cfg.max_iters=4',
        cwd=tmp_path)
    assert 'resumed epoch: 0, iter: 2' in log, log[-3000:]
    assert 'Iter(train) [3/4]' in log and 'Iter(train) [4/4]' in log
    assert 'Iter(train) [1/4]' not in log
    assert (work / 'iter_4.pth').is_file()


def test_resume_auto_survives_a_kill_that_emptied_last_checkpoint(
        trained, tmp_path):
    # CheckpointHook truncates last_checkpoint, then writes the path: a
    # SIGKILL in between left mmengine resuming from '' (FileNotFoundError)
    root, cfg, _ = trained
    work = tmp_path / 'work'
    shutil.copytree(root / 'work', work)
    (work / 'last_checkpoint').write_text('')
    log = _run(
        TRAIN,
        cfg,
        '--work-dir',
        work,
        '--resume',
        '--cfg-options',
        'train_cfg.max_iters=3',
        cwd=tmp_path)
    assert 'resumed epoch: 0, iter: 2' in log, log[-3000:]
    assert (work / 'iter_3.pth').is_file()


def test_latest_checkpoint_follows_mmengine_then_the_newest_save(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    names = ('best_acc_iter_6.pth', 'iter_6.pth', 'iter_4.pth')
    for age, name in enumerate(names):
        (tmp_path / name).write_bytes(b'0')
        os.utime(tmp_path / name, (1000 - age, 1000 - age))
    record = tmp_path / 'last_checkpoint'
    record.write_text(str(tmp_path / 'iter_4.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    # empty (killed mid-write) or naming a deleted file: the newest
    # iter_N/epoch_N save, never best_*
    for text in ('', str(tmp_path / 'iter_8.pth')):
        record.write_text(text)
        assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_6.pth')


def test_test_dumps_predictions_and_accuracy(trained, tmp_path):
    root, cfg, _ = trained
    out = tmp_path / 'res.pkl'
    ckpt = root / 'work' / 'iter_2.pth'
    log = _run(
        TEST,
        cfg,
        ckpt,
        '--work-dir',
        tmp_path / 'w',
        '--out',
        out,
        cwd=tmp_path)
    assert f'Load checkpoint from {ckpt}' in log, log[-3000:]
    assert re.search(r'accuracy/top1: \d+\.\d+', log), log[-3000:]
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 12
    assert preds[0]['pred_score'].shape == (3, ) and 'gt_label' in preds[0]


def test_load_from_checkpoint(trained, tmp_path):
    root, cfg, _ = trained
    ckpt = root / 'work' / 'iter_2.pth'
    log = _run(
        TRAIN,
        cfg,
        '--work-dir',
        tmp_path / 'w',
        '--cfg-options',
        f'load_from={ckpt}',
        'train_cfg.max_iters=1',
        cwd=tmp_path)
    assert f'Load checkpoint from {ckpt}' in log, log[-3000:]
    # load_from restarts the schedule, resume does not
    assert 'Iter(train) [1/1]' in log


def test_amp_trains_with_finite_loss(trained, tmp_path):
    import torch
    _, cfg, _ = trained
    log = _run(TRAIN, cfg, '--work-dir', tmp_path / 'w', '--amp', cwd=tmp_path)
    dumped = Config.fromfile(str(next(
        (tmp_path / 'w').glob('*.py'))))  # the run's config
    assert dumped.optim_wrapper.type == 'AmpOptimWrapper'
    assert dumped.optim_wrapper.loss_scale == 'dynamic'
    # CPU: bf16 autocast (cds_mm.compat lets AmpOptimWrapper build); GPU:
    # mmengine's fp16 default
    cpu = not torch.cuda.is_available()
    assert dumped.optim_wrapper.get('dtype') == ('bfloat16' if cpu else None)
    losses = _losses(log)
    assert len(losses) == 2 and all(np.isfinite(losses)), log[-3000:]
    assert (tmp_path / 'w' / 'iter_2.pth').is_file()


def test_missing_config_is_a_clear_error(tmp_path, capsys):
    for tool, argv in ((TRAIN, []), (TEST, ['ckpt.pth'])):
        with pytest.raises(SystemExit) as exc:
            load_tool(tool).parse_args([str(tmp_path / 'nope.py'), *argv])
        assert exc.value.code == 2
        assert 'config file not found' in capsys.readouterr().err


def test_merge_args_amp_resume_and_work_dir(trained):
    import torch
    _, cfg_file, _ = trained
    train = load_tool(TRAIN)
    args = train.parse_args([str(cfg_file), '--amp', '--resume', 'a.pth'])
    cfg = train.merge_args(Config.fromfile(str(cfg_file)), args)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.resume is True
    assert cfg.load_from == 'a.pth'
    assert cfg.work_dir == osp.join('./work_dirs', 'tiny_cls')
    assert cfg.optim_wrapper.get('dtype') == (
        None if torch.cuda.is_available() else 'bfloat16')
    args = train.parse_args([str(cfg_file), '--resume', '--no-validate'])
    cfg = train.merge_args(Config.fromfile(str(cfg_file)), args)
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.val_dataloader is None


def test_test_tool_picks_scope_specific_pieces(trained):
    from mmdet.evaluation import DumpDetResults
    from mmengine.evaluator import DumpResults
    _, cfg_file, _ = trained
    test = load_tool(TEST)
    args = test.parse_args([str(cfg_file), str(cfg_file), '--show-dir', 'vis'])
    assert type(test.dump_metric('r.pkl', 'mmpretrain')) is DumpResults
    assert type(test.dump_metric('r.pkl', 'mmdet')) is DumpDetResults
    cfg = test.enable_visualization(
        Config.fromfile(str(cfg_file)), args, 'mmpretrain')
    assert cfg.default_hooks.visualization.enable is True
    assert cfg.default_hooks.visualization.out_dir == 'vis'
    assert cfg.default_hooks.visualization.interval == 1
    det = Config(
        dict(
            default_hooks=dict(
                visualization=dict(type='DetVisualizationHook'))))
    det = test.enable_visualization(det, args, 'mmdet')
    assert det.default_hooks.visualization.draw is True
    assert det.default_hooks.visualization.test_out_dir == 'vis'
    with pytest.raises(SystemExit):
        test.parse_args([str(cfg_file), str(cfg_file), '--out', 'res.json'])
