"""``import cds_mm`` registers components and changes nothing else.

Each check runs in a fresh interpreter (the test session itself has the
opt-in fixes applied, see ``conftest.py``). The snapshot covers every
function, class and module-level global of torch, mmengine, mmcv, mmdet and
mmpretrain that is loaded, and every attribute of their classes, by identity.
"""
import json
import subprocess
import sys

import pytest
from cds_test_utils import REPO_ROOT

_SNAPSHOT = r'''
import importlib, json, sys, types
STACK = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmpretrain')
for name in ('torch', 'torchvision.ops', 'mmengine.runner', 'mmengine.optim',
             'mmengine.fileio', 'mmengine.dist', 'mmengine.model',
             'mmengine.dataset', 'mmcv', 'mmcv.ops', 'mmcv.image',
             'mmdet.models', 'mmdet.datasets', 'mmpretrain.models',
             'mmpretrain.datasets'):
    importlib.import_module(name)


def snapshot():
    ids = {}
    for mod_name, mod in list(sys.modules.items()):
        if not (isinstance(mod, types.ModuleType)
                and mod_name.split('.')[0] in STACK):
            continue
        for attr, value in list(vars(mod).items()):
            if attr.startswith('__') or isinstance(value, types.ModuleType):
                continue
            ids[f'{mod_name}.{attr}'] = id(value)
            if isinstance(value, type) and value.__module__ == mod_name:
                for k, v in list(vars(value).items()):
                    ids[f'{mod_name}.{attr}.{k}'] = id(v)
    import torch.serialization as ts
    getter = getattr(ts, 'get_safe_globals', lambda: [])
    ids['torch.serialization.<safe globals>'] = len(getter())
    return ids


before = snapshot()
for name in sys.argv[1:]:
    importlib.import_module(name)
after = snapshot()
changed = sorted(k for k in before if k in after and before[k] != after[k])
print(json.dumps(dict(changed=changed, compared=len(before))))
'''


def _changed_by(*imports):
    proc = subprocess.run([sys.executable, '-c', _SNAPSHOT, *imports],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_cds_mm_patches_nothing():
    result = _changed_by('cds_mm')
    assert result['compared'] > 10000, result['compared']
    assert result['changed'] == []


def test_compat_is_the_opt_in_that_patches():
    # the same snapshot sees the shims once they are asked for
    changed = set(_changed_by('cds_mm', 'cds_mm.compat')['changed'])
    expected = {
        'mmengine.optim.optimizer.amp_optimizer_wrapper.AmpOptimWrapper.'
        '__init__',
        'mmengine.fileio.backends.local_backend.LocalBackend.put',
        'mmengine.dataset.base_dataset.BaseDataset.full_init',
        'mmcv.ops.roi_align.RoIAlign.forward',
        'mmcv.adjust_hue',
        'torch.serialization.<safe globals>',
    }
    assert expected <= changed, sorted(expected - changed)


_ONLY = r'''
import sys
sys.modules[sys.argv[1]] = None          # as if it were not installed
import warnings
import torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import cds_mm
assert not [w for w in caught if 'cds_mm' in str(w.message)], \
    [str(w.message) for w in caught]     # a library not installed is silent
from cds_mm.utils.imports import MISSING
from mmengine.registry import DefaultScope
assert sys.argv[1] in MISSING, MISSING
torch.manual_seed(0)
if sys.argv[1] == 'mmdet':
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='CDSClassifier',
            classifier=dict(
                type='ImageClassifier',
                backbone=dict(type='ResNet_CIFAR', depth=18,
                              base_channels=8),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=3,
                          in_channels=64)),
            cds_head=dict(type='CDSHead',
                          taps=['backbone.layer1', 'backbone.layer4'])))
        samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
        views = [torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)]
        losses = model.loss(views, samples)
else:
    assert 'mmpretrain' not in sys.modules or \
        sys.modules['mmpretrain'] is None
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(dict(
            type='CDSDetector',
            detector=dict(
                type='RetinaNet',
                data_preprocessor=dict(type='DetDataPreprocessor'),
                backbone=dict(type='ResNet', depth=18, base_channels=8,
                              out_indices=(1, 2, 3)),
                neck=dict(type='FPN', in_channels=[16, 32, 64],
                          out_channels=16, num_outs=3),
                bbox_head=dict(
                    type='RetinaHead', num_classes=2, in_channels=16,
                    feat_channels=16, stacked_convs=1,
                    anchor_generator=dict(
                        type='AnchorGenerator', octave_base_scale=4,
                        scales_per_octave=1, ratios=[1.0],
                        strides=[8, 16, 32]),
                    bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
                    loss_cls=dict(type='FocalLoss', use_sigmoid=True),
                    loss_bbox=dict(type='L1Loss')),
                train_cfg=dict(
                    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5,
                                  neg_iou_thr=0.4),
                    sampler=dict(type='PseudoSampler'),
                    allowed_border=-1, pos_weight=-1, debug=False)),
            cds_head=dict(type='CDSHead', taps=['neck.fpn_convs.0'],
                          use_labels=False,
                          projector=dict(type='MLPProjector',
                                         hid_channels=16, out_channels=8))))
        samples = []
        for _ in range(2):
            s = DetDataSample(metainfo=dict(
                img_shape=(64, 64), pad_shape=(64, 64),
                batch_input_shape=(64, 64), scale_factor=(1., 1.)))
            s.gt_instances = InstanceData(
                bboxes=torch.tensor([[4., 4., 40., 40.]]),
                labels=torch.tensor([1]))
            samples.append(s)
        inputs = torch.rand(2, 3, 64, 64)
        losses = model.loss(dict(main=inputs, cds=inputs.clone()),
                            dict(main=samples, cds=samples))
total = sum(v.sum() for k, v in losses.items() if 'loss' in k
            and hasattr(v, 'sum'))
total.backward()
print('KEYS', sorted(k for k in losses if k.startswith('loss_cds')))
'''


@pytest.mark.parametrize('hidden,key', [('mmdet', 'loss_cds_s1'),
                                        ('mmpretrain', 'loss_cds_s0')])
def test_one_library_is_enough(hidden, key):
    proc = subprocess.run([sys.executable, '-c', _ONLY, hidden],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert key in proc.stdout, proc.stdout
