"""Distilled CDS: a CDS student learns from a frozen CDS teacher's logits and
head embeddings."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hub import get_config
from mmpretrain.registry import MODELS
from torch import Tensor

from ..utils.build_scope import build_scope
from ..utils.classifier_api import logits_taps
from ..utils.loss_weights import per_tap_weights
from .cds_classifier import CDSClassifier, LossStep


@MODELS.register_module()
class DistilledCDSClassifier(CDSClassifier):
    """A :class:`CDSClassifier` student distilled from a CDS-trained teacher.

    Losses (paper §5, "distilled CDS"), on top of the student's own CE and
    CDS terms:

    - ``loss_kd``: logit distillation on view 1 (``kd_loss``, T^2-scaled);
    - ``loss_embed_s<i>``: head-to-head embedding matching on each tap: the
      student's L2-normalised projection of tap ``i`` goes through a learnable
      linear adapter (identity when the widths agree) and is pulled to the
      teacher head ``i``'s projection of the same image and view, as the
      mean over samples and views of the squared L2 distance, times
      ``embed_weight[i]``. Only in ``mode='cds'`` (the student needs heads).

    The student's logits are read from its own ``loss()`` (the head runs
    once), from the submodule whose output they are (``head`` of
    ``ImageClassifier``, ``model`` of ``TimmClassifier``); a classifier
    without one is rejected when the model is built. Batch augments of the
    student's recipe mix view 1 for the student's CE and the KD term alike:
    the teacher sees the same mixed images.

    ``mode='off'`` gives plain KD (CE + ``loss_kd``). The teacher always runs
    in eval mode under ``no_grad`` with frozen parameters (the authors' code
    leaves it in train mode, so its BatchNorm drifts). It is
    any model :class:`CDSClassifier` can wrap and must predict the same classes
    from the same normalised inputs; its weights come from
    ``tools/export_plain.py``'s output, loaded in :meth:`init_weights`.

    The student's loss is :class:`CDSClassifier`'s (its template steps), so
    its options act here too: ``view2_norm`` (``'joint'`` included: the
    logits are read from the one head call on view 1's rows),
    ``view2_scale`` (the teacher's embeddings see the same resized view 2)
    and ``cds_interval`` (embedding matching on the steps with the
    contrastive term).

    Args:
        teacher (dict | str): The teacher's model config (a ``CDSClassifier``
            dict) or its training config file (``mmpretrain::``-style paths
            work); its ``model`` is used.
        teacher_ckpt (str): The teacher's ``plain.pth`` from
            ``tools/export_plain.py`` (or its ``tools/train.py`` checkpoint).
        teacher_heads_ckpt (str, optional): The teacher's ``heads.pth`` from
            the same export; needed for embedding matching unless
            ``teacher_ckpt`` is a training checkpoint. Defaults to None.
        kd_loss (dict): Logit distillation loss. Defaults to
            ``dict(type='KDLoss', temperature=4.0, loss_weight=1.0)``.
        embed_weight (float | list[float]): Weight of each tap's embedding
            matching; 0 turns it off. Defaults to 0.1 (the authors' CIFAR
            value).
        **kwargs: Arguments of :class:`CDSClassifier` for the student.

    Shapes:
        inputs (loss): list of 2 tensors (N, C, H, W) (``mode='cds'``), or
            one tensor / list when ``mode='off'`` (view 1 is used).
        logits: (N, num_classes); embeddings: (N, D_i) student, (N, D_t)
            teacher.
    """

    def __init__(self,
                 teacher: Union[dict, str],
                 teacher_ckpt: str,
                 teacher_heads_ckpt: Optional[str] = None,
                 kd_loss: dict = dict(
                     type='KDLoss', temperature=4.0, loss_weight=1.0),
                 embed_weight: Union[float, Sequence[float]] = 0.1,
                 **kwargs):
        super().__init__(**kwargs)
        dummy = torch.zeros(1, 3, self.probe_size, self.probe_size)
        self.logits_tap = logits_taps(
            self.classifier, lambda: self.classifier(dummy, mode='tensor'),
            'DistilledCDSClassifier')
        teacher_cfg = _teacher_model_cfg(teacher)
        with build_scope(MODELS):
            self.teacher = MODELS.build(teacher_cfg)
            self.kd_loss = MODELS.build(kd_loss)
        if not isinstance(self.teacher, CDSClassifier):
            raise ValueError(
                'model.teacher must build a CDSClassifier (got '
                f'{type(self.teacher).__name__}): wrap the teacher classifier '
                "as in its CDS training config")
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        self.teacher_ckpt = teacher_ckpt
        self.teacher_heads_ckpt = teacher_heads_ckpt

        n_taps = len(self.taps.names)
        self.embed_weights = per_tap_weights(
            embed_weight, n_taps, 'model', name='embed_weight')
        self.match_embeddings = self.mode == 'cds' and any(self.embed_weights)
        self.kd_adapters = nn.ModuleList()
        if self.match_embeddings:
            if self.teacher.mode != 'cds' or len(
                    self.teacher.taps.names) != n_taps:
                raise ValueError(
                    'embedding matching pairs student head i with teacher '
                    'head i: the teacher '
                    f"needs mode='cds' and {n_taps} taps, got "
                    f"mode={self.teacher.mode!r} with "
                    f'{len(self.teacher.taps.names)} taps (or set '
                    'model.embed_weight=0)')
            for ps, pt in zip(self.cds_head.projectors,
                              self.teacher.cds_head.projectors):
                self.kd_adapters.append(nn.Identity() if ps.out_channels ==
                                        pt.out_channels else nn.Linear(
                                            ps.out_channels, pt.out_channels))

    def train(self, mode: bool = True) -> 'DistilledCDSClassifier':
        """Set the student's mode; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def init_weights(self) -> None:
        """Initialise the student, then load the teacher's checkpoint (strict).
        """
        super().init_weights()
        self._load_teacher()

    def _task_loss(self, step: LossStep) -> None:
        """The student's own step, reading its logits on the way (the head
        runs once, also with ``view2_norm='joint'``)."""
        with self.logits_tap.capture() as logits:
            super()._task_loss(step)
        step.student_logits = logits[0]

    def _cds_modules(self) -> List[nn.Module]:
        return [self.cds_head, self.kd_adapters]

    def _extra_losses(self, step: LossStep) -> Dict[str, Tensor]:
        """Logit KD on view 1, and embedding matching on each tap when the
        contrastive term ran (the teacher sees the views the student saw)."""
        teacher = self.teacher
        with torch.no_grad():
            with teacher.taps.capture() as t_feats1:
                t_logits = teacher.classifier(step.view1, mode='tensor')
        losses = dict(loss_kd=self.kd_loss(step.student_logits, t_logits))
        # a cds_interval step without CDS keeps the adapters in the graph
        # through loss_cds_skipped (_cds_modules)
        if not (self.match_embeddings and step.z1 is not None):
            return losses
        with torch.no_grad():
            t_z1, t_z2 = teacher.cds_head.project_views(
                t_feats1, teacher._tapped(step.view2))
        for i, (adapter,
                w) in enumerate(zip(self.kd_adapters, self.embed_weights)):
            student = adapter(torch.cat([step.z1[i], step.z2[i]]))
            target = torch.cat([t_z1[i], t_z2[i]])
            losses[f'loss_embed_s{i}'] = w * embedding_distance(
                student, target)
        return losses

    def _load_teacher(self) -> None:
        state_dict = _read_state_dict(self.teacher_ckpt, 'model.teacher_ckpt')
        if self.teacher_heads_ckpt is not None:
            state_dict.update(
                _read_state_dict(self.teacher_heads_ckpt,
                                 'model.teacher_heads_ckpt'))
        hint = ('give the plain.pth that tools/export_plain.py wrote for the '
                'teacher '
                'config, and that config as model.teacher')
        try:
            missing, unexpected = self.teacher.load_state_dict(
                state_dict, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise ValueError(
                f'model.teacher_ckpt {self.teacher_ckpt!r} does not fit '
                f'model.teacher ({hint}):\n{e}') from e
        missing_heads = [k for k in missing if k.startswith('cds_head.')]
        missing = [k for k in missing if not k.startswith('cds_head.')]
        if missing or unexpected:
            raise ValueError(
                f'model.teacher_ckpt {self.teacher_ckpt!r} does not fit '
                'model.teacher: '
                f'missing {missing[:5]}, unexpected {unexpected[:5]} ({hint})')
        if missing_heads and self.match_embeddings:
            raise ValueError(
                "embedding matching needs the teacher's CDS heads, but the "
                "teacher checkpoints "
                f'hold no {missing_heads[0]!r}: set model.teacher_heads_ckpt '
                'to the heads.pth '
                'of the teacher export, or model.embed_weight=0')


def _teacher_model_cfg(teacher: Union[dict, str]) -> dict:
    if isinstance(teacher, dict):
        return dict(teacher)
    if not isinstance(teacher, str):
        raise TypeError(
            'model.teacher must be a model dict or a config path, got '
            f'{teacher!r}')
    if '::' in teacher:
        cfg = get_config(teacher)
    elif osp.isfile(teacher):
        cfg = Config.fromfile(teacher)
    else:
        raise FileNotFoundError(
            f'model.teacher: config file {teacher!r} not found (paths are '
            'relative to the working directory, the repo root for tools/)')
    return cfg.model.to_dict()


def _read_state_dict(path: str, key: str) -> dict:
    if not path or not osp.isfile(path):
        raise FileNotFoundError(
            f'{key}: checkpoint {path!r} not found; export the trained '
            'teacher with tools/export_plain.py first')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    return dict(ckpt.get('state_dict', ckpt))


def embedding_distance(student: Tensor, target: Tensor) -> Tensor:
    """Mean over rows of the squared L2 distance (``loss_embed_s<i>`` before
    its weight).

    Shapes:
        student, target: (M, D).
        return: ().
    """
    return (student - target).pow(2).sum(1).mean()
