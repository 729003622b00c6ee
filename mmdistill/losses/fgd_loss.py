"""FGD: focal and global distillation of one FPN level of a detector."""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdistill.registry import MODELS
from .align import build_align_layer
from .box_masks import background_masks, boxes_and_shapes, foreground_masks
from .functional import (FEATURE_HINTS, OWN_INPUT_SIZE, SPATIAL_SIZE, check_same_shape,
                         dim_names)

FPN_LEVEL_HINT = ('Tap the same FPN level (same stride) in student and teacher. '
                  f'{OWN_INPUT_SIZE} at the same level.')


def fgd_attention(feature: Tensor, temp: float) -> Tuple[Tensor, Tensor]:
    """FGD's spatial (N×H×W) and channel (N×C) attention of an N×C×H×W feature:
    ``A_S = H·W · softmax_hw(mean_c |F| / T)``, ``A_C = C · softmax_c(mean_hw |F| / T)``."""
    n, c, h, w = feature.shape
    magnitude = feature.abs()
    spatial = h * w * F.softmax(magnitude.mean(dim=1).reshape(n, h * w) / temp, dim=1)
    channel = c * F.softmax(magnitude.mean(dim=(2, 3)) / temp, dim=1)
    return spatial.reshape(n, h, w), channel


class GlobalContextBlock(nn.Module):
    """The global context block of GCNet (Cao et al., "GCNet: Non-local Networks Meet
    Squeeze-Excitation Networks and Beyond", ICCVW 2019), as FGD's global loss uses it:

    .. math::
        G(F) = F + W_2\\,\\mathrm{ReLU}\\Big(\\mathrm{LN}\\big(W_1 \\sum_j
               \\mathrm{softmax}_j(W_k F)\\, F_j\\big)\\Big)

    :math:`W_k` a 1×1 conv C→1 (the context attention over positions j), :math:`W_1` a 1×1 conv
    C→C/2, LN a LayerNorm over C/2×1×1, :math:`W_2` a 1×1 conv C/2→C. Initialised as the FGD
    reference does: :math:`W_k` Kaiming-normal (fan-in, ReLU gain) with zero bias, :math:`W_2`
    all zeros, so that :math:`G` starts as the identity; :math:`W_1` and LN keep PyTorch's
    defaults.

    Args:
        channels: C, at least 2.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.context_attention = nn.Conv2d(channels, 1, kernel_size=1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=1),
            nn.LayerNorm([channels // 2, 1, 1]),
            nn.ReLU(),
            nn.Conv2d(channels // 2, channels, kernel_size=1))
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.kaiming_normal_(self.context_attention.weight, mode='fan_in',
                                nonlinearity='relu')
        nn.init.zeros_(self.context_attention.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, feature: Tensor) -> Tensor:
        n, c = feature.shape[:2]
        attention = F.softmax(self.context_attention(feature).reshape(n, -1, 1), dim=1)
        context = torch.bmm(feature.reshape(n, c, -1), attention)  # N×C×1
        return feature + self.transform(context.reshape(n, c, 1, 1))


@MODELS.register_module()
class FGDLoss(nn.Module):
    """Focal and global distillation (Yang et al., "Focal and Global Knowledge Distillation for
    Detectors", CVPR 2022) of one feature level; a config lists one per FPN level.

    With the teacher feature :math:`F^t` and the student feature :math:`F^s` (N×C×H×W, mapped
    to the teacher's channels by a 1×1 conv when they differ), the attention of each
    (:func:`fgd_attention`, temperature T)

    .. math::
        A_S = HW \\cdot \\mathrm{softmax}_{hw}\\big(\\tfrac{1}{C}\\textstyle\\sum_c
        |F_c| / T\\big), \\qquad A_C = C \\cdot \\mathrm{softmax}_c\\big(\\tfrac{1}{HW}
        \\textstyle\\sum_{hw} |F_{hw}| / T\\big),

    the foreground mask :math:`M` (at each cell, the largest :math:`1/(h_r w_r)` over the
    ground-truth boxes r covering it, :math:`h_r w_r` the cells box r lights) and the background
    mask :math:`B` (1 where :math:`M=0`, divided by its sum per image), the loss is

    .. math::
        L_{fg} = \\tfrac{1}{N} \\textstyle\\sum M A_S^t A_C^t (F^s - F^t)^2, \\quad
        L_{bg} = \\tfrac{1}{N} \\textstyle\\sum B A_S^t A_C^t (F^s - F^t)^2,

        L_{at} = \\tfrac{1}{N} \\big(\\textstyle\\sum |A_C^s - A_C^t|
                 + \\textstyle\\sum |A_S^s - A_S^t|\\big), \\quad
        L_{gl} = \\tfrac{1}{N} \\textstyle\\sum \\big(G_s(F^s) - G_t(F^t)\\big)^2,

        L_{FGD} = \\alpha L_{fg} + \\beta L_{bg} + \\gamma L_{at} + \\lambda L_{gl}

    with :math:`G_s, G_t` two :class:`GlobalContextBlock` (separate weights), owned and trained
    by this loss. Gradients reach the student feature, the align conv and both context blocks,
    never the teacher feature.

    **Output**: a dict ``{'fg': αL_fg, 'bg': βL_bg, 'attention': γL_at, 'global': λL_gl}``,
    already weighted, which :class:`~mmdistill.Distiller` logs as ``loss_<name>_fg`` etc.: the
    four parts sum to :math:`L_{FGD}` in the total loss, and each can be watched on its own.

    **Masks** (:mod:`mmdistill.losses.box_masks`) come from the data samples:
    ``gt_instances.bboxes`` (xyxy pixels of the batch input) and the metainfo ``img_shape`` and
    ``batch_input_shape`` that mmdet's ``DetDataPreprocessor`` sets. Where this differs from the
    reference implementation, on purpose:

    - rows are y and columns x; the reference indexes its H×W mask as ``[x-range, y-range]``,
      which is right only on square maps;
    - boxes are scaled by ``feature size / batch_input_shape`` (the padded batch the feature
      map covers) and clipped to ``img_shape``; the reference divides by ``img_shape``, which
      stretches the boxes of an image padded to a larger batch;
    - boxes of zero width or height (after clipping) light nothing, and :math:`h_r w_r` counts
      the cells lit on the map (the reference counts cells beyond the bottom/right border too).

    Reference configs' hyperparameters (T, α, β, γ, λ): RetinaNet, GFL, SOLO 0.5, 1e-3, 5e-4,
    5e-4, 5e-6; Faster/Mask R-CNN 0.5, 5e-5, 2.5e-5, 5e-5, 5e-7; RepPoints 0.5, 1.6e-3, 8e-4,
    8e-4, 8e-6; FCOS 0.8, 1.6e-3, 8e-4, 8e-4, 8e-6; YOLOX 0.5, 2e-3, 1e-3, 1e-3, 1e-5. The
    defaults here are the reference class's (γ = 1e-3, which none of its configs uses).

    Args:
        student_channels: channels of the student feature.
        teacher_channels: channels of the teacher feature (at least 2).
        temp: the attention temperature T.
        alpha_fgd: α, weight of the foreground feature loss.
        beta_fgd: β, weight of the background feature loss.
        gamma_fgd: γ, weight of the attention loss.
        lambda_fgd: λ, weight of the global loss.
    """

    weight_arguments = ('alpha_fgd', 'beta_fgd', 'gamma_fgd', 'lambda_fgd')

    def __init__(self, student_channels: int, teacher_channels: int, temp: float = 0.5,
                 alpha_fgd: float = 1e-3, beta_fgd: float = 5e-4, gamma_fgd: float = 1e-3,
                 lambda_fgd: float = 5e-6):
        super().__init__()
        if temp <= 0:
            raise ValueError(f'FGDLoss temp must be positive, got {temp}')
        if teacher_channels < 2:
            raise ValueError(f'FGDLoss needs teacher_channels >= 2 (its context block halves '
                             f'them), got {teacher_channels}')
        self.student_channels = student_channels
        self.temp = temp
        self.weights = {'fg': alpha_fgd, 'bg': beta_fgd, 'attention': gamma_fgd,
                        'global': lambda_fgd}
        self.align = build_align_layer(student_channels, teacher_channels, 'conv')
        self.student_context = GlobalContextBlock(teacher_channels)
        self.teacher_context = GlobalContextBlock(teacher_channels)

    def init_weights(self) -> None:
        """Re-initialise both context blocks as the reference does."""
        self.student_context.init_weights()
        self.teacher_context.init_weights()

    def forward(self, student_feature: Tensor, teacher_feature: Tensor,
                data_samples: Sequence) -> Dict[str, Tensor]:
        if student_feature.dim() != 4 or student_feature.shape[1] != self.student_channels:
            raise ValueError(
                f'FGDLoss expects N×{self.student_channels}×H×W student features, got '
                f'{tuple(student_feature.shape)}: set student_channels to the tapped module\'s '
                'output channels.')
        student = self.align(student_feature)
        teacher = teacher_feature.detach()
        check_same_shape(student, teacher, 'FGDLoss features (after align)',
                         dim_names(student.dim(), {1: 'channels'}),
                         dict(FEATURE_HINTS, **{SPATIAL_SIZE: FPN_LEVEL_HINT}))
        n, _, h, w = teacher.shape
        boxes, image_shapes, batch_shapes = boxes_and_shapes(data_samples, teacher.device)
        if len(boxes) != n:
            raise ValueError(f'FGDLoss got {len(boxes)} data samples for a batch of {n} '
                             'features: pass the data samples of this batch.')
        foreground = foreground_masks(boxes, image_shapes, batch_shapes, (h, w))
        foreground = foreground.to(teacher.dtype)
        background = background_masks(foreground)

        spatial_t, channel_t = fgd_attention(teacher, self.temp)
        spatial_s, channel_s = fgd_attention(student, self.temp)
        # A_S^t · Σ_c A_C^t (F^s − F^t)², N×H×W: the focal squared error at each cell
        focal = ((student - teacher)**2 * channel_t[:, :, None, None]).sum(dim=1) * spatial_t
        losses = {
            'fg': (foreground * focal).sum() / n,
            'bg': (background * focal).sum() / n,
            'attention': ((channel_s - channel_t).abs().sum() +
                          (spatial_s - spatial_t).abs().sum()) / n,
            'global': ((self.student_context(student) -
                        self.teacher_context(teacher))**2).sum() / n,
        }
        return {part: self.weights[part] * value for part, value in losses.items()}
