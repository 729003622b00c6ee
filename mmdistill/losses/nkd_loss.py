import torch
import torch.nn.functional as F
from torch import nn

from mmdistill.registry import MODELS
from .functional import check_same_shape, class_scores, drop_classes


@MODELS.register_module()
class NKDLoss(nn.Module):
    """Normalized knowledge distillation on classification logits (Yang et al., "From
    Knowledge Distillation to Self-Knowledge Distillation: A Unified Approach with Normalized
    Loss and Customized Soft Labels", ICCV 2023).

    With ``p = softmax(z)`` and ``y`` the target class,

    .. math::
        L_{target} = -\\frac{1}{N} \\sum_n p^t_{n,y} \\log p^s_{n,y},\\qquad
        L_{non} = -\\gamma \\, T^2 \\frac{1}{N} \\sum_n \\sum_{i \\ne y}
            q^t_{n,i} \\log q^s_{n,i}

    where :math:`q = \\mathrm{softmax}(z_{\\neg y} / T)` runs over the non-target logits only
    (for ``T = 1`` that is :math:`p_i / (1 - p_y)`: the normalisation the name refers to). The
    teacher's target probability :math:`p^t_{n,y}` is a constant (no gradient). The loss is
    ``loss_weight · (L_target + L_non)``, logged as its two parts ``target`` and
    ``non_target``; it is meant to be added to the student's own cross-entropy.

    Labels come from the data samples: ``gt_label``, or with Mixup/CutMix (``gt_score`` set
    by mmpretrain's batch augments) the class of the highest score, as the reference does.

    Args:
        tau: the temperature T of the non-target term (1 on ImageNet, 3 on CIFAR-100).
        gamma: the weight γ of the non-target term (1.5 for CNNs, 1 for DeiT, 3.5 CIFAR-100).
        loss_weight: a weight on the whole loss.
    """

    def __init__(self, tau: float = 1.0, gamma: float = 1.5, loss_weight: float = 1.0):
        super().__init__()
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.tau = tau
        self.gamma = gamma
        self.loss_weight = loss_weight

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                data_samples) -> dict:
        check_same_shape(student_logits, teacher_logits, 'NKDLoss logits',
                         'Tap the classification layers (N×classes) of both models; they '
                         'must predict the same classes.')
        if student_logits.dim() != 2:
            raise ValueError(f'NKDLoss expects N×classes logits, got shape '
                             f'{tuple(student_logits.shape)}: tap the final linear layer '
                             "(e.g. 'student.head.fc').")
        scores, _ = class_scores(data_samples, student_logits.shape[1], student_logits.device)
        target = scores.argmax(dim=1, keepdim=True)
        teacher_logits = teacher_logits.detach()

        log_p_student = F.log_softmax(student_logits, dim=1).gather(1, target)
        p_teacher = F.softmax(teacher_logits, dim=1).gather(1, target)
        target_loss = -(p_teacher * log_p_student).mean()

        log_q_student = F.log_softmax(drop_classes(student_logits, target) / self.tau, dim=1)
        q_teacher = F.softmax(drop_classes(teacher_logits, target) / self.tau, dim=1)
        non_target_loss = -self.gamma * self.tau**2 * (q_teacher * log_q_student).sum(1).mean()
        return dict(target=self.loss_weight * target_loss,
                    non_target=self.loss_weight * non_target_loss)
