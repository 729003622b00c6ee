import torch
import torch.nn.functional as F
from torch import nn

from mmdistill.registry import MODELS
from .functional import (CLASSES_HINT, check_same_shape, class_scores, dim_names, drop_classes,
                         self_target_weights, weighted_target_nll)


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

    weight_arguments = ('gamma', 'loss_weight')

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
                         dim_names(student_logits.dim(), {1: 'classes'}),
                         {'classes': CLASSES_HINT})
        if student_logits.dim() != 2:
            raise ValueError(f'NKDLoss expects N×classes logits, got shape '
                             f'{tuple(student_logits.shape)}: tap the final linear layer '
                             "(e.g. 'student.head.fc').")
        scores, _ = class_scores(data_samples, student_logits.shape[1], student_logits.device)
        target = scores.argmax(dim=1, keepdim=True)
        teacher_logits = teacher_logits.detach()

        p_teacher = F.softmax(teacher_logits, dim=1).gather(1, target)
        target_loss = weighted_target_nll(F.log_softmax(student_logits, dim=1), target,
                                          p_teacher)

        log_q_student = F.log_softmax(drop_classes(student_logits, target) / self.tau, dim=1)
        q_teacher = F.softmax(drop_classes(teacher_logits, target) / self.tau, dim=1)
        non_target_loss = -self.gamma * self.tau**2 * (q_teacher * log_q_student).sum(1).mean()
        return dict(target=self.loss_weight * target_loss,
                    non_target=self.loss_weight * non_target_loss)


@MODELS.register_module()
class TfNKDLoss(nn.Module):
    """Teacher-free NKD (tf-NKD): NKD's target term with a soft target built from the
    student's own prediction (Yang et al., "Rethinking Knowledge Distillation via
    Cross-Entropy", arXiv:2208.10139, 2022: the first version of the NKD paper).

    With ``s = softmax(z)[y]`` the student's probability of its target class ``y`` and ``v``
    the label's value (1 for a hard label; the top-2 classes and their scores under
    Mixup/CutMix):

    .. math::
        w_{n,y} = s_{n,y} + v_{n,y} - \\tfrac{1}{N}\\textstyle\\sum_m s_{m,y}
            \\;(0 \\text{ where } v = 0),\\qquad
        L = -\\frac{1}{N}\\sum_n \\sum_y w_{n,y} \\log s_{n,y}

    ``w`` is a constant (no gradient): a sample the student finds easier than the batch
    average gets a target above its label value, a harder one below. It is the target term of
    :class:`NKDLoss` with the teacher's target probability replaced by ``w``, and the
    target term of :class:`USKDLoss` with ``s`` in place of ``s²``; it has no non-target term
    and no weight of its own (``loss_weight`` is 1 in the authors' configs). It is meant to be
    added to the student's own cross-entropy; a config sets ``teacher=None``.

    Where we differ from the authors' code (their ``ClassificationDistiller`` with
    ``tf_nkd=True``): the log-probability is ``log_softmax(z)`` instead of
    ``log(softmax(z))`` (the same value, finite where the softmax underflows to 0).

    Args:
        loss_weight: a weight on the loss.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, student_logits: torch.Tensor, data_samples) -> torch.Tensor:
        if student_logits.dim() != 2:
            raise ValueError(f'TfNKDLoss expects N×classes logits, got shape '
                             f'{tuple(student_logits.shape)}: tap the final linear layer '
                             "(e.g. 'student.head.fc').")
        scores, soft = class_scores(data_samples, student_logits.shape[1],
                                    student_logits.device)
        value, target = scores.topk(2 if soft else 1, dim=1)
        log_p = F.log_softmax(student_logits, dim=1)
        weight = self_target_weights(log_p.gather(1, target).exp(), value, power=1)
        return self.loss_weight * weighted_target_nll(log_p, target, weight)
