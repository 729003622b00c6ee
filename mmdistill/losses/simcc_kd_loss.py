from typing import Optional, Sequence

import torch
from torch import nn

from mmdistill.registry import MODELS
from .functional import check_same_shape, softmax_kl_divergence

SIMCC_DIMS = ('batch', 'keypoints', 'SimCC bins')
SIMCC_HINTS = {
    'keypoints': 'Student and teacher heads need the same keypoints (out_channels).',
    'SimCC bins': 'Student and teacher heads need the same SimCC bins: the same codec '
                  'input_size and simcc_split_ratio.'}


@MODELS.register_module()
class SimCCDistillLoss(nn.Module):
    """DWPose's logit distillation on SimCC heads (Yang et al., "Effective Whole-body Pose
    Estimation with Two-stages Distillation", ICCVW 2023).

    For the x and y logits of K keypoints (N×K×bins each):

    .. math::
        L = w \\sum_{a \\in \\{x, y\\}} \\frac{1}{N K} \\sum_{n, k} v_{nk} \\,
            KL\\big(\\mathrm{softmax}(\\beta z^{t,a}_{nk}) \\,\\|\\,
                    \\mathrm{softmax}(\\beta z^{s,a}_{nk})\\big)

    with β the SimCC head's own loss ``beta`` (10 for RTMPose). As in DWPose, every keypoint
    counts, visible or not (:math:`v = 1`). With ``use_visibility=True``, :math:`v_{nk}` is the
    keypoint weight the codec gives each ground-truth keypoint (0 for unlabelled ones), read
    from the data samples' ``gt_instance_labels.keypoint_weights``; the normaliser stays N·K,
    as in mmpose's own ``KLDiscretLoss``.

    Args:
        beta: the inverse temperature β.
        loss_weight: the weight w (DWPose: 0.1 in stage 1, 1 in stage 2).
        use_visibility: weight each keypoint by its ground-truth keypoint weight.
    """

    def __init__(self, beta: float = 10.0, loss_weight: float = 1.0,
                 use_visibility: bool = False):
        super().__init__()
        if beta <= 0:
            raise ValueError(f'beta must be positive, got {beta}')
        self.beta = beta
        self.loss_weight = loss_weight
        self.use_visibility = use_visibility

    def forward(self, student_x: torch.Tensor, student_y: torch.Tensor,
                teacher_x: torch.Tensor, teacher_y: torch.Tensor,
                data_samples: Optional[Sequence] = None) -> torch.Tensor:
        for axis, student, teacher in (('x', student_x, teacher_x), ('y', student_y, teacher_y)):
            check_same_shape(student, teacher, f'SimCCDistillLoss {axis} logits',
                             SIMCC_DIMS, SIMCC_HINTS)
        tau = 1.0 / self.beta
        kl = (softmax_kl_divergence(student_x, teacher_x, tau, dim=-1) +
              softmax_kl_divergence(student_y, teacher_y, tau, dim=-1))  # N×K
        if self.use_visibility:
            kl = kl * self._keypoint_weights(data_samples, kl)
        return self.loss_weight * kl.mean()

    @staticmethod
    def _keypoint_weights(data_samples, like: torch.Tensor) -> torch.Tensor:
        if data_samples is None:
            raise ValueError('SimCCDistillLoss(use_visibility=True) needs the data samples')
        weights = torch.cat([
            torch.as_tensor(s.gt_instance_labels.keypoint_weights) for s in data_samples
        ]).to(like)
        if weights.shape != like.shape:
            raise ValueError(f'keypoint weights {tuple(weights.shape)} do not match the logits '
                             f'(N×K = {tuple(like.shape)}): one instance per sample expected '
                             '(top-down pose estimation).')
        return weights
