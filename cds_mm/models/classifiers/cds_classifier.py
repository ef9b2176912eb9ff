"""CDS around any mmpretrain classifier, built from its config."""
import copy
from typing import List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..heads.cds_head import MODES
from ..taps import FeatureTaps


@MODELS.register_module()
class CDSClassifier(BaseModel):
    """Contrastive Deep Supervision for an mmpretrain classifier.

    The classifier's own ``loss()`` runs once on view 1 (the task recipe);
    feature taps read its intermediate outputs on the way. View 2 (the
    contrastive recipe) runs through the backbone only (and the neck, if a
    neck is tapped). ``predict()`` and ``forward(mode='tensor')`` are the plain
    classifier's, so evaluation and deployment see the plain model.

    Args:
        classifier (dict): Config of any mmpretrain classifier, e.g. an
            upstream config's ``model``.
        cds_head (dict): Config of :class:`CDSHead`; ``in_channels`` is probed
            from the tapped modules when missing, and ``num_classes`` is taken
            from ``classifier.head`` when missing.
        mode (str): ``'cds'`` (contrastive), ``'dsn'`` (CE on auxiliary
            heads) or ``'off'`` (plain model). It overrides ``cds_head.mode``,
            so an ablation changes this key alone. Defaults to ``'cds'``.
        joint_batch (bool): Run both views through the whole classifier as
            one 2N batch, as the authors' code does (BatchNorm sees both
            views); CE still uses view 1 only. Costs a full second forward of
            the head part. Defaults to False.
        probe_size (int): Side of the dummy image used to probe the tapped
            channels. Defaults to 64.
        data_preprocessor (dict, optional): Defaults to a
            :class:`MultiViewDataPreprocessor` (accepts a list of views) with
            the classifier's mean, std and channel order. A dict without
            ``type`` (mmpretrain's top-level ``data_preprocessor``, which the
            Runner hands to the model) gives those settings instead.
        init_cfg (dict, optional): Initialisation config. Defaults to None.

    Shapes:
        inputs (loss): list of 2 tensors (N, C, H, W), view 1 then view 2, or
            one tensor (N, C, H, W) when ``mode`` needs no second view.
        inputs (predict/tensor): (N, C, H, W).
    """

    def __init__(self,
                 classifier: dict,
                 cds_head: dict,
                 mode: str = 'cds',
                 joint_batch: bool = False,
                 probe_size: int = 64,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if mode not in MODES:
            raise ValueError(f'model.mode must be one of {MODES}, got {mode!r}')
        classifier = copy.deepcopy(dict(classifier))
        if data_preprocessor is None or 'type' not in data_preprocessor:
            data_preprocessor = _multi_view_preprocessor(
                data_preprocessor or classifier.get('data_preprocessor'))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.classifier = MODELS.build(classifier)
        self.mode = mode
        self.joint_batch = joint_batch

        head_cfg = copy.deepcopy(dict(cds_head))
        head_cfg['mode'] = mode
        self.taps = FeatureTaps(self.classifier, head_cfg['taps'], 'cds_head.taps')
        self.taps.check_trainable()
        self._view2_stage = 'backbone' if all(
            n.startswith('backbone.') for n in self.taps.names) else 'neck'
        if head_cfg.get('in_channels') is None:
            dummy = torch.zeros(1, 3, probe_size, probe_size)
            head_cfg['in_channels'] = self.taps.probe_channels(
                self.classifier,
                lambda: self.classifier.extract_feat(dummy, stage=self._view2_stage))
        if mode == 'dsn' and head_cfg.get('num_classes') is None:
            head_cfg['num_classes'] = classifier.get('head', {}).get('num_classes')
        self.cds_head = MODELS.build(head_cfg)
        self._register_load_state_dict_pre_hook(_prefix_plain_keys)

    def forward(self,
                inputs: Union[Tensor, List[Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """Dispatch like mmpretrain classifiers: 'loss', 'predict' or 'tensor'."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.classifier(_first_view(inputs), mode='tensor')
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: Union[Tensor, List[Tensor]],
             data_samples: List[DataSample]) -> dict:
        """Classifier loss on view 1 plus the intermediate losses."""
        view1 = _first_view(inputs)
        if self.mode == 'off':
            return _rename_task_loss(self.classifier.loss(view1, data_samples))
        labels = torch.cat([ds.gt_label for ds in data_samples]).to(view1.device)
        if not self.cds_head.needs_second_view:
            with self.taps.capture() as feats:
                losses = self.classifier.loss(view1, data_samples)
            losses.update(self.cds_head.loss(feats, labels=labels))
            return _rename_task_loss(losses)

        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "mode='cds' needs two views per image: wrap the train "
                "pipeline's transforms in MultiView(num_views=[1, 1], ...) "
                f'(got {type(inputs).__name__} of {len(inputs)} items)')
        view2 = inputs[1]
        n = view1.shape[0]
        if self.joint_batch:
            with self.taps.capture() as both:
                feats = self.classifier.extract_feat(torch.cat([view1, view2]))
            feats = tuple(f[:n] for f in feats) if isinstance(
                feats, (tuple, list)) else feats[:n]
            losses = self.classifier.head.loss(feats, data_samples)
            feats1, feats2 = [f[:n] for f in both], [f[n:] for f in both]
        else:
            with self.taps.capture() as feats1:
                losses = self.classifier.loss(view1, data_samples)
            with self.taps.capture() as feats2:
                self.classifier.extract_feat(view2, stage=self._view2_stage)
        losses.update(self.cds_head.loss(feats1, feats2, labels))
        return _rename_task_loss(losses)

    def predict(self, inputs: Union[Tensor, List[Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        """The plain classifier's prediction (heads unused)."""
        return self.classifier.predict(_first_view(inputs), data_samples, **kwargs)


def _rename_task_loss(losses: dict) -> dict:
    """mmpretrain heads call their CE ``'loss'``, the key mmengine logs the
    optimised total under; ``'loss_cls'`` keeps both visible."""
    if 'loss' in losses:
        losses['loss_cls'] = losses.pop('loss')
    return losses


def _prefix_plain_keys(state_dict, prefix, *args) -> None:
    """Let ``load_from`` take a plain classifier checkpoint (e.g. pretrained
    weights): keys without ``classifier.`` are moved under it."""
    if any(k.startswith(prefix + 'classifier.') for k in state_dict):
        return
    for key in list(state_dict):
        rest = key[len(prefix):]
        if key.startswith(prefix) and not rest.startswith(
                ('cds_head.', 'data_preprocessor.')):
            state_dict[prefix + 'classifier.' + rest] = state_dict.pop(key)


def _first_view(inputs: Union[Tensor, Sequence[Tensor]]) -> Tensor:
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


def _multi_view_preprocessor(inner: Optional[dict]) -> dict:
    """The classifier's normalisation, for a list of views."""
    inner = dict(inner or {})
    cfg = dict(type='MultiViewDataPreprocessor')
    for key in ('mean', 'std', 'pad_size_divisor', 'pad_value'):
        if key in inner:
            cfg[key] = inner[key]
    cfg['to_rgb'] = bool(inner.get('to_rgb', False) or inner.get('bgr_to_rgb', False))
    return cfg
