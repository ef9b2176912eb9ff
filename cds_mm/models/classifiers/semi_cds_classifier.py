"""Semi-supervised CDS: labelled images get CE + CDS, unlabelled ones only
SimCLR."""
from typing import Dict, List, Optional

from mmpretrain.registry import MODELS
from torch import Tensor

from ..utils.classifier_api import check_head_loss
from ..utils.cls_batch import hard_labels, running_batch_augments
from ..utils.views import take_rows
from ..utils.weight_checks import check_weight
from .cds_classifier import CDSClassifier, LossStep


@MODELS.register_module()
class SemiCDSClassifier(CDSClassifier):
    """CDS on a batch that mixes labelled and unlabelled images (paper §5).

    A sample is labelled when its ``DataSample`` has a ``gt_label``
    (:class:`SemiSplitDataset` drops it from the unlabelled part). View 1 of
    the whole batch runs through the classifier's backbone and neck once, so
    BatchNorm sees every image; only the labelled rows reach the classifier
    head and its cross-entropy. The contrastive loss on the tapped stages is
    SupCon with labels on the labelled rows (``loss_cds_s<i>``) and label-free
    SimCLR on the unlabelled rows (``loss_unsup_s<i>``, times
    ``unlabelled_weight``). The labelled : unlabelled ratio per batch is the
    sampler's ``source_ratio`` (``mmdet.MultiSourceSampler``).

    Both contrastive losses run on every step that has the contrastive term,
    whatever rows the batch holds (a group without rows adds a zero), so with
    ``gather_distributed=True`` every rank joins every gather.

    ``mode='off'`` is the supervised-only baseline: the unlabelled rows are
    dropped before the forward, so it trains on the labelled rows alone with
    the same batches and iterations. It works with every classifier type;
    ``mode='cds'`` needs ``extract_feat()`` and ``head.loss()`` (as
    ``ImageClassifier`` has), and batch augments (in the data preprocessor
    that runs, e.g. from ``train_cfg.augments``) are rejected: Mixup/CutMix
    would mix labelled with unlabelled rows. The other options of
    :class:`CDSClassifier` (``view2_norm``, ``view2_scale``,
    ``cds_interval``) act as there.

    Args:
        unlabelled_weight (float): Weight of the unlabelled SimCLR terms,
            on top of each tap's ``cds_head.loss_weight``. Defaults to 1.0.
        **kwargs: Arguments of :class:`CDSClassifier`; ``mode`` must be
            ``'cds'`` or ``'off'``.

    Shapes:
        inputs (loss): list of 2 tensors (N, C, H, W), view 1 then view 2.
    """

    def __init__(self, unlabelled_weight: float = 1.0, **kwargs):
        mode = kwargs.get('mode', 'cds')
        if mode not in ('cds', 'off'):
            raise ValueError(
                "SemiCDSClassifier: model.mode must be 'cds' or 'off' (DSN "
                f'needs labels on every image), got {mode!r}')
        super().__init__(**kwargs)
        self.unlabelled_weight = check_weight(unlabelled_weight,
                                              'model.unlabelled_weight')
        if mode == 'cds':
            check_head_loss(self.classifier, "SemiCDSClassifier (mode='cds')")
        if running_batch_augments(self.data_preprocessor) is not None:
            raise ValueError(
                'SemiCDSClassifier: the data preprocessor runs batch augments '
                '(model.classifier.train_cfg.augments or '
                'model.data_preprocessor...batch_augments), which would mix '
                'labelled and unlabelled images; remove them')

    @staticmethod
    def _labelled(step: LossStep) -> List[int]:
        return [i for i, s in enumerate(step.data_samples) if 'gt_label' in s]

    def _task_rows(self, step: LossStep) -> Optional[List[int]]:
        """Only the labelled rows reach the head."""
        return self._labelled(step)

    def _task_loss(self, step: LossStep) -> None:
        """``mode='off'``: CE on the labelled rows, the others dropped before
        the forward; otherwise :class:`CDSClassifier`'s step."""
        if self.mode != 'off':
            return super()._task_loss(step)
        lab = self._labelled(step)
        if not lab:
            step.losses = self._head_loss(step.view1, [], step.data_samples)
            return
        step.losses = self.classifier.loss(step.view1[lab],
                                           [step.data_samples[i] for i in lab])

    def _contrast(self, step: LossStep) -> Dict[str, Tensor]:
        """SupCon on the labelled rows and SimCLR on the unlabelled ones,
        both always called (a collective under ``gather_distributed``)."""
        lab = self._labelled(step)
        unl = [i for i in range(len(step.data_samples)) if i not in lab]
        labels = hard_labels([step.data_samples[i] for i in lab],
                             step.view1.device)
        losses = self.cds_head.loss_by_projections(
            take_rows(step.z1, lab), take_rows(step.z2, lab), labels)
        losses.update(
            self.cds_head.loss_by_projections(
                take_rows(step.z1, unl),
                take_rows(step.z2, unl),
                None,
                prefix='loss_unsup',
                weight=self.unlabelled_weight))
        return losses
