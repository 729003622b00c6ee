import torch
from torch import nn

from mmdistill.registry import MODELS
from .align import build_align_layer
from .functional import FEATURE_HINTS, check_same_shape, dim_names

MASK_TYPES = ('spatial', 'channel')


def build_generation_block(channels: int) -> nn.Sequential:
    """MGD's generator: Conv3×3 → ReLU → Conv3×3, ``channels`` in and out, padding 1 (ViTKD
    uses the same block on its token grid)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1))


def random_keep_mask(feature: torch.Tensor, ratio: float, mask_type: str) -> torch.Tensor:
    """A 0/1 mask that zeroes each spatial position (N×1×H×W) or each channel (N×C×1×1) of an
    N×C×H×W ``feature`` with probability ``ratio``, drawn from torch's global RNG (so a seeded
    run draws the same masks)."""
    n, c, h, w = feature.shape
    shape = (n, 1, h, w) if mask_type == 'spatial' else (n, c, 1, 1)
    return (torch.rand(shape, device=feature.device) >= ratio).to(feature.dtype)


@MODELS.register_module()
class MGDLoss(nn.Module):
    """Masked generative distillation (Yang et al., "Masked Generative Distillation",
    ECCV 2022): the student generates the teacher's feature from a randomly masked copy of
    its own.

    .. math::
        L = \\alpha \\cdot \\frac{1}{N} \\sum_{n,c,h,w}
            \\Big(G\\big(M \\odot A(F^s)\\big) - F^t\\Big)^2

    :math:`A` is a 1×1 conv from student to teacher channels (the identity when they are
    equal), :math:`M` a random 0/1 mask that zeroes each position with probability λ, and
    :math:`G` = Conv3×3 → ReLU → Conv3×3 on the teacher's channels. Both :math:`A` and
    :math:`G` belong to the loss and are dropped when the student is exported. The teacher
    feature gets no gradient.

    One loss serves one N×C×H×W feature: the last backbone stage of a classifier or a
    segmentor, or one FPN level of a detector (one loss per level, each with its own layers).

    Args:
        student_channels: channels of the student feature.
        teacher_channels: channels of the teacher feature.
        loss_weight: the weight α. Reference values: 7e-5 (classification), 2e-5
            (detection and segmentation).
        mask_ratio: the masked fraction λ: 0.15 (classification), 0.65 (detection), 0.75
            (segmentation).
        mask_type: ``'spatial'`` masks whole positions (N×1×H×W), as the paper and the
            detection and segmentation reference code do; ``'channel'`` masks whole channels
            (N×C×1×1), which is what the classification reference code does.
    """

    def __init__(self, student_channels: int, teacher_channels: int, loss_weight: float,
                 mask_ratio: float, mask_type: str = 'spatial'):
        super().__init__()
        if not 0 <= mask_ratio <= 1:
            raise ValueError(f'mask_ratio must be in [0, 1], got {mask_ratio}')
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got '{mask_type}'")
        self.student_channels = student_channels
        self.loss_weight = loss_weight
        self.mask_ratio = mask_ratio
        self.mask_type = mask_type
        self.align = build_align_layer(student_channels, teacher_channels, 'conv')
        self.generation = build_generation_block(teacher_channels)

    def forward(self, student_feature: torch.Tensor,
                teacher_feature: torch.Tensor) -> torch.Tensor:
        if student_feature.dim() != 4 or student_feature.shape[1] != self.student_channels:
            raise ValueError(f'MGDLoss expects an N×{self.student_channels}×H×W student '
                             f'feature, got {tuple(student_feature.shape)}: set '
                             'student_channels to the tapped module\'s channels.')
        aligned = self.align(student_feature)
        check_same_shape(aligned, teacher_feature, 'MGDLoss features (after align)',
                         dim_names(aligned.dim(), {1: 'channels'}), FEATURE_HINTS)
        masked = aligned * random_keep_mask(aligned, self.mask_ratio, self.mask_type)
        generated = self.generation(masked)
        squared = (generated - teacher_feature.detach())**2
        return self.loss_weight * squared.sum() / student_feature.shape[0]
