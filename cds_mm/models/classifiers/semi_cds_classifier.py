"""Semi-supervised CDS: labelled images get CE + CDS, unlabelled ones only
SimCLR."""
from typing import Dict, List, Union

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..utils.classifier_api import check_head_loss
from ..utils.views import split_views, take_rows
from .cds_classifier import CDSClassifier, _hard_labels, _rename_task_loss


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

    ``mode='off'`` is the supervised-only baseline: the unlabelled rows are
    dropped before the forward, so it trains on the labelled rows alone with
    the same batches and iterations. It works with every classifier type;
    ``mode='cds'`` needs ``extract_feat()`` and ``head.loss()`` (as
    ``ImageClassifier`` has), and batch augments (``train_cfg.augments``)
    are rejected: Mixup/CutMix would mix labelled with unlabelled rows.

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
                "needs "
                f'labels on every image), got {mode!r}')
        if kwargs.get('joint_batch'):
            raise ValueError(
                'SemiCDSClassifier: model.joint_batch is not supported; view '
                '1 '
                'of all images already runs as one batch')
        if unlabelled_weight < 0:
            raise ValueError('model.unlabelled_weight must be >= 0, got '
                             f'{unlabelled_weight}')
        super().__init__(**kwargs)
        self.unlabelled_weight = float(unlabelled_weight)
        if mode == 'cds':
            check_head_loss(self.classifier, "SemiCDSClassifier (mode='cds')")
        if getattr(self.classifier.data_preprocessor, 'batch_augments', None):
            raise ValueError(
                'SemiCDSClassifier: model.classifier.train_cfg.augments '
                '(batch augments) would mix labelled and unlabelled images; '
                'remove them')

    def loss(self, inputs: Union[Tensor, List[Tensor]],
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """CE on the labelled rows, SupCon / SimCLR on the labelled /
        unlabelled rows."""
        view1, view2 = split_views(inputs, self.mode == 'cds')
        lab = [i for i, ds in enumerate(data_samples) if 'gt_label' in ds]
        unl = [i for i, ds in enumerate(data_samples) if 'gt_label' not in ds]
        lab_samples = [data_samples[i] for i in lab]
        if self.mode == 'off':
            if not lab:
                return dict(loss_cls=self._zero(view1))
            return _rename_task_loss(
                self.classifier.loss(view1[lab], lab_samples))

        with self.taps.capture() as feats1:
            feats = self.classifier.extract_feat(view1)
        feats2 = self._tapped(view2)
        losses = {}
        if lab:
            losses.update(
                self.classifier.head.loss(take_rows(feats, lab), lab_samples))
        # keeps the key and the head in the graph (DDP) when a batch has no
        # labels
        else:
            losses['loss'] = self._zero(view1)
        z1, z2 = self.cds_head.project_views(feats1, feats2)
        if lab:
            losses.update(
                self.cds_head.loss_by_projections(
                    take_rows(z1, lab), take_rows(z2, lab),
                    _hard_labels(lab_samples, view1.device)))
        if unl:
            losses.update(
                self.cds_head.loss_by_projections(
                    take_rows(z1, unl),
                    take_rows(z2, unl),
                    None,
                    prefix='loss_unsup',
                    weight=self.unlabelled_weight))
        return _rename_task_loss(losses)

    def _zero(self, ref: Tensor) -> Tensor:
        """0 that depends on every trainable parameter (no unused ones under
        DDP)."""
        return sum(p.sum() for p in self.parameters()
                   if p.requires_grad) * 0. + ref.sum() * 0.
