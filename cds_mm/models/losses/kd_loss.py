"""Logit distillation (Hinton et al. 2015) with the usual T^2 scaling."""
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from ..utils.weight_checks import check_weight


@MODELS.register_module()
class KDLoss(BaseModule):
    """``loss_weight * T^2 * KL(softmax(t / T) || softmax(s / T))``, mean over
    samples.

    The T^2 factor keeps the gradient scale of the soft targets independent of
    ``temperature`` (the authors' code leaves it out: docs/differences.md).
    Computed in fp32, also under autocast.

    Args:
        temperature (float): Softmax temperature T. Defaults to 4.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.

    Shapes:
        student_logits, teacher_logits: (N, num_classes).
        return: () scalar.
    """

    def __init__(self, temperature: float = 4.0, loss_weight: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(
                f'KDLoss.temperature must be > 0, got {temperature}')
        self.temperature = float(temperature)
        self.loss_weight = check_weight(loss_weight, 'kd_loss.loss_weight')

    def forward(self, student_logits: Tensor,
                teacher_logits: Tensor) -> Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f'student logits {tuple(student_logits.shape)} and teacher '
                'logits '
                f'{tuple(teacher_logits.shape)} differ: the two models must '
                'predict the same classes')
        t = self.temperature
        log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
        log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, reduction='batchmean', log_target=True)
        return self.loss_weight * t * t * kl
