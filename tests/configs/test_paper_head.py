"""The classification CDS configs carry the authors' head (Zhang et al., ECCV
2022, and their released code): SepConv stacks on the 4 ResNet stages, the
last one included, SupCon with labels at temperature 0.07, weight 0.1 each.
"""
import glob
import os.path as osp

import pytest
import torch
from cds_test_utils import REPO_ROOT, build_cls
from mmengine.config import Config
from mmpretrain.structures import DataSample

import cds_mm  # noqa: F401

CONFIGS = sorted(
    glob.glob(
        osp.join(REPO_ROOT, 'configs', 'cds_classification', '*_cds_*.py')))
PAPER_HEAD = dict(
    type='CDSHead',
    taps=[f'backbone.layer{i}' for i in (1, 2, 3, 4)],
    loss_weight=0.1,
    projector=dict(type='SepConvProjector'),
    loss=dict(type='SupConLoss', temperature=0.07),
    use_labels=True)


def _cfg(path):
    # without custom_imports: this test does not opt in to cds_mm.compat
    return Config.fromfile(path, import_custom_modules=False)


def test_every_classification_cds_config_is_found():
    names = [osp.basename(p) for p in CONFIGS]
    assert 'resnet18_cds_1xb128_cifar100.py' in names and len(names) >= 5


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_carries_the_paper_head(path):
    model = _cfg(path).model
    assert model.type == 'CDSClassifier'
    assert model.get('mode', 'cds') == 'cds'
    assert model.cds_head.to_dict() == PAPER_HEAD


def test_built_paper_head_of_the_cifar_config():
    model = _cfg(CONFIGS[[osp.basename(p) for p in CONFIGS
                          ].index('resnet18_cds_1xb128_cifar100.py')]).model
    net = build_cls(model.to_dict()).train()
    head = net.cds_head
    assert head.loss_weights == [0.1] * 4 and head.use_labels
    assert head.loss_module.temperature == 0.07
    assert head.loss_module.scale == 1.0  # base_temperature = temperature
    # SepConv blocks reach the last stage's width: 3, 2, 1 and 0 (pool only)
    assert [len(p.blocks) for p in head.projectors] == [3, 2, 1, 0]
    assert [p.out_channels for p in head.projectors] == [512] * 4
    calls = []
    orig = head.loss_module.forward
    head.loss_module.forward = lambda f, y=None: calls.append(
        (tuple(f.shape), None if y is None else y.tolist())) or orig(f, y)
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    labels = [3, 1, 3, 7]
    losses = net.loss(views, [DataSample().set_gt_label(y) for y in labels])
    assert sorted(losses) == [
        'loss_cds_s0', 'loss_cds_s1', 'loss_cds_s2', 'loss_cds_s3', 'loss_cls'
    ]
    # SupCon with the labels on every tap, (N, 2 views, 512)
    assert calls == [((4, 2, 512), labels)] * 4
