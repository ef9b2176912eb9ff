"""Projector types resolve through the registry scope of the wrapper.

A projector registered only in mmpretrain's ``MODELS`` is found by
``CDSClassifier``, one registered only in mmdet's by ``CDSDetector``, even
when another library's scope is the default one (as after building the other
kind of model in the same process).
"""
import copy

import pytest
import torch.nn as nn
from cds_test_utils import DEMO_DET_CFG
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as CLS_MODELS

import cds_mm  # noqa: F401

CLASSIFIER = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=8,
        base_channels=8,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=5, in_channels=64))
TAPS = ['backbone.layer2', 'backbone.layer4']


class _PoolLinear(nn.Module):
    """Pool and one linear layer: a projector no shared registry knows."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.out_channels = out_channels
        self.fc = nn.Linear(in_channels, out_channels)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def registered():
    """``_PoolLinear`` in one library's registry only, removed afterwards."""
    added = []

    def register(registry, name):
        registry.register_module(name=name, module=_PoolLinear)
        added.append((registry, name))

    yield register
    for registry, name in added:
        registry._module_dict.pop(name)


def test_classifier_finds_a_projector_registered_in_mmpretrain(registered):
    registered(CLS_MODELS, 'PretrainOnlyProjectorForTest')
    cfg = dict(
        type='mmpretrain.CDSClassifier',
        classifier=copy.deepcopy(CLASSIFIER),
        cds_head=dict(
            type='CDSHead',
            taps=TAPS,
            projector=dict(
                type='PretrainOnlyProjectorForTest', out_channels=8)))
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = CLS_MODELS.build(cfg)
    assert all(type(p) is _PoolLinear for p in model.cds_head.projectors)
    assert type(model.classifier).__name__ == 'ImageClassifier'


def test_detector_finds_a_projector_registered_in_mmdet(registered):
    registered(DET_MODELS, 'DetOnlyProjectorForTest')
    cfg = copy.deepcopy(Config.fromfile(DEMO_DET_CFG).model)
    cfg.type = 'mmdet.CDSDetector'
    cfg.cds_head.projector = dict(
        type='DetOnlyProjectorForTest', out_channels=8)
    cfg.instance_head = None
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = DET_MODELS.build(cfg)
    assert all(type(p) is _PoolLinear for p in model.cds_head.projectors)


def test_an_unknown_projector_names_the_scope():
    cfg = dict(
        type='mmpretrain.CDSClassifier',
        classifier=copy.deepcopy(CLASSIFIER),
        cds_head=dict(
            type='CDSHead', taps=TAPS, projector=dict(type='NoSuchProjector')))
    with pytest.raises(
            ValueError,
            match="unknown projector type "
            "'NoSuchProjector' in the 'mmpretrain' registry"):
        CLS_MODELS.build(cfg)
