"""Every classifier type mmpretrain registers, in every wrapper path.

Each path (plain CDS, DSN, ``joint_batch``, semi-supervised, distilled)
either trains the type through its public methods or is refused when the
model is built, with a message naming the type and what it lacks. Types whose
package is not installed (timm, transformers) must say so when built. Two
stand-ins registered here cover the shapes of those types offline: a
classifier whose logits come from one ``model`` (as ``TimmClassifier``), and
one whose ``model`` returns an output object (as
``HuggingFaceClassifier``).
"""
import copy
import importlib.util
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from cds_test_utils import build_cls
from mmpretrain.models.classifiers import BaseClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from test_cds_classifier import CLASSIFIER, TAPS  # noqa: E402

import cds_mm  # noqa: F401
from cds_mm.models.losses import KDLoss


class _ModelClassifierForTest(BaseClassifier):
    """Logits from ``self.model``, CE in ``loss()``; no backbone, no head."""

    def __init__(self, data_preprocessor=None, init_cfg=None):
        super().__init__(
            init_cfg, data_preprocessor
            or dict(type='mmpretrain.ClsDataPreprocessor'))
        self.model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'tensor':
            return self.logits(inputs)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.predict(inputs, data_samples)

    def logits(self, inputs):
        return self.model(inputs)

    def loss(self, inputs, data_samples):
        labels = torch.cat([s.gt_label for s in data_samples])
        return dict(loss=F.cross_entropy(self.logits(inputs), labels))

    def predict(self, inputs, data_samples=None):
        scores = self.logits(inputs).softmax(1)
        return [DataSample().set_pred_score(s) for s in scores]


class _OutputObjectClassifierForTest(_ModelClassifierForTest):
    """``self.model`` returns an object with ``.logits``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model = _WithLogits(self.model)

    def logits(self, inputs):
        return self.model(inputs).logits


class _WithLogits(nn.Module):

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return SimpleNamespace(logits=self.net(x))


STAND_INS = (_ModelClassifierForTest, _OutputObjectClassifierForTest)
for _cls in STAND_INS:
    MODELS.register_module(module=_cls, force=True)

ALL = ('plain', 'dsn', 'joint_batch', 'semi', 'distilled')
NO_HEAD = "has no head with loss()"
NO_LOGITS = 'no such submodule of {} returns the logits'
# per type: (package, classifier config, taps, {path: expected error or None})
TYPES = {
    'ImageClassifier': (None, CLASSIFIER, TAPS, {}),
    'TimmClassifier':
    ('timm',
     dict(
         type='TimmClassifier',
         model_name='resnet10t',
         num_classes=5,
         pretrained=False), [f'model.layer{i}' for i in (1, 2, 3, 4)],
     dict(joint_batch=NO_HEAD, semi=NO_HEAD)),
    'HuggingFaceClassifier': (  # from a local model config (no download)
        'transformers', dict(type='HuggingFaceClassifier', model_name='-'),
        [f'model.resnet.encoder.stages.{i}' for i in (0, 1)],
        dict(joint_batch=NO_HEAD, semi=NO_HEAD, distilled=NO_LOGITS)),
    '_ModelClassifierForTest':
    (None, dict(type='_ModelClassifierForTest'), ['model.1', 'model.4'],
     dict(joint_batch=NO_HEAD, semi=NO_HEAD)),
    '_OutputObjectClassifierForTest':
    (None, dict(type='_OutputObjectClassifierForTest'),
     ['model.net.1', 'model.net.4'],
     dict(joint_batch=NO_HEAD, semi=NO_HEAD, distilled=NO_LOGITS)),
}
REGISTERED = sorted(
    name for name, cls in MODELS.module_dict.items()
    if isinstance(cls, type) and issubclass(cls, BaseClassifier))


def test_every_registered_classifier_type_is_covered():
    assert {'ImageClassifier', 'TimmClassifier', 'HuggingFaceClassifier'
            } <= set(REGISTERED)
    assert set(REGISTERED) <= set(TYPES), set(REGISTERED) - set(TYPES)


def _classifier_cfg(name, tmp_path):
    package, cfg, _, _ = TYPES[name]
    if name == 'HuggingFaceClassifier' and importlib.util.find_spec(package):
        from transformers import ResNetConfig
        ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_labels=5).save_pretrained(tmp_path)
        cfg = dict(type='HuggingFaceClassifier', model_name=str(tmp_path))
    return copy.deepcopy(cfg)


def _wrapper_cfg(path, classifier, taps):
    head = dict(
        type='CDSHead',
        taps=taps,
        projector=dict(type='MLPProjector', hid_channels=16, out_channels=8))
    if path == 'dsn':
        head['num_classes'] = 5
    cfg = dict(
        type='CDSClassifier',
        classifier=classifier,
        cds_head=head,
        probe_size=32,
        mode='dsn' if path == 'dsn' else 'cds')
    if path == 'joint_batch':
        cfg['joint_batch'] = True
    if path == 'semi':
        cfg['type'] = 'SemiCDSClassifier'
    if path == 'distilled':
        teacher = dict(
            type='CDSClassifier',
            classifier=copy.deepcopy(CLASSIFIER),
            cds_head=dict(type='CDSHead', taps=TAPS))
        cfg.update(
            type='DistilledCDSClassifier',
            teacher=teacher,
            teacher_ckpt='unused: init_weights is not called',
            embed_weight=0.0)
    return cfg


def _batch(path):
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(6, 3, 32, 32, generator=g) for _ in range(2)]
    labels = [0, 1, None, 3, None, 4] if path == 'semi' else [0, 1, 2, 3, 4, 0]
    return views, [
        DataSample() if y is None else DataSample().set_gt_label(y)
        for y in labels
    ]


@pytest.mark.parametrize('path', ALL)
@pytest.mark.parametrize('name', sorted(TYPES))
def test_each_wrapper_path_trains_the_type_or_refuses_it(name, path, tmp_path):
    package, _, taps, refused = TYPES[name]
    if package and importlib.util.find_spec(package) is None:
        with pytest.raises(ImportError, match=f'{name} requires {package}'):
            build_cls(
                _wrapper_cfg(path, _classifier_cfg(name, tmp_path), taps))
        return
    cfg = _wrapper_cfg(path, _classifier_cfg(name, tmp_path), taps)
    torch.manual_seed(0)
    if path in refused:
        with pytest.raises(ValueError) as e:
            build_cls(cfg)
        msg = str(e.value)
        assert name in msg and refused[path].format(name) in msg, msg
        return
    model = build_cls(cfg).train()
    views, samples = _batch(path)
    losses = model.loss(views, samples)
    expect = {
        'dsn': 'loss_dsn_s0',
        'semi': 'loss_unsup_s0'
    }.get(path, 'loss_cds_s0')
    assert {'loss_cls', expect} <= set(losses), sorted(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    first_tap = model.taps.module(taps[0])
    assert any(p.grad is not None and p.grad.abs().max() > 0
               for p in first_tap.parameters())
    if path == 'distilled':  # the logits distilled are the student's own
        model.eval()
        losses = model.loss(views, samples)
        with torch.no_grad():
            s_logits = model.classifier(views[0], mode='tensor')
            t_logits = model.teacher.classifier(views[0], mode='tensor')
        torch.testing.assert_close(losses['loss_kd'],
                                   KDLoss(temperature=4.0)(s_logits, t_logits))
