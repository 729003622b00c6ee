import torch
from torch import nn

from mmdistill.registry import MODELS
from .functional import (CLASSES_HINT, LOGIT_SIZE_HINT, SPATIAL_SIZE, check_same_shape,
                         dim_names, softmax_kl_divergence)


@MODELS.register_module()
class HintonKDLoss(nn.Module):
    """Classic knowledge distillation on logits (Hinton et al., "Distilling the Knowledge in a
    Neural Network", 2015).

    .. math::
        L = w \\cdot \\tau^2 \\cdot \\frac{1}{N} \\sum_n
            KL\\big(\\mathrm{softmax}(z^t_n/\\tau) \\,\\|\\, \\mathrm{softmax}(z^s_n/\\tau)\\big)

    Logits are N×C, or have more dimensions: the softmax runs over ``class_dim`` and the mean
    over every other position (pixels of an N×C×H×W segmentation map, or the keypoints of
    N×K×bins SimCC logits with ``class_dim=-1``, count as samples).

    With ``spatial=True`` the softmax runs instead over the H×W positions of each channel of
    an N×C×H×W map, and the mean over the N·C channels: channel-wise distillation (Shu et al.,
    "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021), the logit term of
    MGD's segmentation recipe (τ=4, w=3).

    Args:
        tau: the temperature τ.
        loss_weight: the weight w.
        class_dim: the dimension holding the classes (1 for N×C×…, -1 for SimCC bins).
        spatial: distribute each channel over positions instead (``class_dim`` is unused).
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0, class_dim: int = 1,
                 spatial: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        self.tau = tau
        self.loss_weight = loss_weight
        self.class_dim = class_dim
        self.spatial = spatial

    def forward(self, student_logits: torch.Tensor,
                teacher_logits: torch.Tensor) -> torch.Tensor:
        classes = 1 if self.spatial else self.class_dim
        names = dim_names(student_logits.dim(), {classes: 'classes'},
                          SPATIAL_SIZE if student_logits.dim() == 4 else 'positions')
        check_same_shape(student_logits, teacher_logits, 'HintonKDLoss logits', names,
                         {'classes': CLASSES_HINT, SPATIAL_SIZE: LOGIT_SIZE_HINT})
        if self.spatial:
            if student_logits.dim() != 4:
                raise ValueError('HintonKDLoss(spatial=True) needs N×C×H×W logits, got '
                                 f'{tuple(student_logits.shape)}')
            kl = softmax_kl_divergence(student_logits.flatten(2), teacher_logits.flatten(2),
                                       self.tau, dim=-1)
        else:
            kl = softmax_kl_divergence(student_logits, teacher_logits, self.tau,
                                       dim=self.class_dim)
        return self.loss_weight * self.tau**2 * kl.mean()
