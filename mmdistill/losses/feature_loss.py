import torch
from torch import nn

from mmdistill.registry import MODELS
from .align import build_align_layer, channels_of
from .functional import FEATURE_HINTS, check_same_shape, dim_names

REDUCTIONS = ('batch', 'mean')


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """Feature imitation: squared error between aligned student and teacher features
    (FitNets, Romero et al., ICLR 2015; the form DWPose and MGD use for their feature terms).

    .. math::
        L = w \\cdot \\frac{1}{N} \\sum \\big(A(F_s) - F_t\\big)^2
        \\quad\\text{(reduction='batch')},\\qquad
        L = w \\cdot \\mathrm{mean}\\big((A(F_s) - F_t)^2\\big)
        \\quad\\text{(reduction='mean')}

    :math:`A` is a 1×1 conv (N×C×H×W features) or a linear layer (token features N×L×D)
    when ``student_channels != teacher_channels``, the identity otherwise. On the N×K×H×W
    heatmaps of two pose heads with ``reduction='mean'`` it is the heatmap loss of Fast Pose
    Distillation (Zhang et al., "Fast Human Pose Estimation", CVPR 2019), on the scale of
    mmpose's ``KeypointMSELoss``.

    Args:
        student_channels: channels of the student feature.
        teacher_channels: channels of the teacher feature.
        align: ``'conv'`` or ``'linear'``: the kind of align layer.
        reduction: ``'batch'`` (sum over everything, divided by the batch size N) or
            ``'mean'`` (mean over every element).
        loss_weight: the weight w.
    """

    def __init__(self, student_channels: int, teacher_channels: int, align: str = 'conv',
                 reduction: str = 'batch', loss_weight: float = 1.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got '{reduction}'")
        self.student_channels = student_channels
        self.align_kind = align
        self.align = build_align_layer(student_channels, teacher_channels, align)
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self, student_feature: torch.Tensor,
                teacher_feature: torch.Tensor) -> torch.Tensor:
        got = channels_of(student_feature, self.align_kind)
        if got != self.student_channels:
            raise ValueError(f'FeatureMSELoss expects {self.student_channels} student '
                             f'channels, the feature {tuple(student_feature.shape)} has {got}: '
                             'set student_channels to match the tapped module.')
        aligned = self.align(student_feature)
        channels = 1 if self.align_kind == 'conv' else -1
        check_same_shape(aligned, teacher_feature, 'FeatureMSELoss features (after align)',
                         dim_names(aligned.dim(), {channels: 'channels'}), FEATURE_HINTS)
        squared = (aligned - teacher_feature.detach())**2
        if self.reduction == 'mean':
            return self.loss_weight * squared.mean()
        return self.loss_weight * squared.sum() / student_feature.shape[0]
