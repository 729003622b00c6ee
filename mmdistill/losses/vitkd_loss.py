import math

import torch
from torch import nn

from mmdistill.registry import MODELS
from .align import build_align_layer
from .functional import OWN_INPUT_SIZE, check_same_shape
from .mgd_loss import build_generation_block

TOKEN_DIMS = ('batch', 'tokens', 'channels')
TOKEN_HINTS = {
    'tokens': 'Student and teacher must have as many patch tokens (same image and patch size) '
              'after dropping student_extra_tokens / teacher_extra_tokens. '
              f'{OWN_INPUT_SIZE}: another patch grid.',
    'channels': "teacher_dims must be the teacher's embed_dims."}


def random_token_mask(batch: int, tokens: int, ratio: float,
                      device: torch.device) -> torch.Tensor:
    """A B×L boolean mask, True at the masked tokens: each row keeps exactly
    ``int(L·(1−ratio))`` tokens chosen at random (those with the smallest uniform noise, drawn
    from torch's global RNG, so a seeded run draws the same masks) and masks the others."""
    keep = int(tokens * (1 - ratio))
    noise = torch.rand(batch, tokens, device=device)
    rank = noise.argsort(dim=1).argsort(dim=1)
    return rank >= keep


@MODELS.register_module()
class ViTKDLoss(nn.Module):
    """ViT feature distillation (Yang et al., "ViTKD: Practical Guidelines for ViT feature
    knowledge distillation", 2022): mimic the teacher's shallow blocks, generate its deepest
    tokens from a masked student.

    With patch tokens only (the leading class/distillation tokens dropped), :math:`F_0, F_1`
    the outputs of blocks 0 and 1 and :math:`F_L` the final-norm output after the last block
    (B×N×D each):

    .. math::
        L_{mimic} = \\alpha \\frac{1}{B} \\sum_{l \\in \\{0,1\\}}
            \\big\\| A_l(F^s_l) - F^t_l \\big\\|^2

    .. math::
        L_{gen} = \\frac{\\beta}{\\lambda} \\frac{1}{B} \\sum_{b} \\sum_{j \\in M_b}
            \\big\\| G\\big(\\tilde F_b\\big)_j - F^t_{L,b,j} \\big\\|^2

    :math:`A_l`, :math:`A_L` are linear maps from student to teacher dims (the identity when
    they are equal); :math:`\\tilde F` is :math:`A_L(F^s_L)` with the masked tokens
    :math:`M_b` (a random fraction λ of each image's tokens) replaced by a learned mask token
    (zero at start), laid out on the √N×√N patch grid; :math:`G` is Conv3×3 → ReLU → Conv3×3
    (MGD's generator). Only masked tokens count in :math:`L_{gen}`, whose sum is divided by λ.
    Teacher tokens get no gradient. The two terms are logged as ``mimic`` and ``gen``. DeiT
    recipes add :class:`NKDLoss` (T=1, γ=1) on the logits.

    Args:
        student_dims: embedding dims of the student (DeiT-T 192, DeiT-S 384, DeiT-B 768).
        teacher_dims: embedding dims of the teacher (DeiT III-S 384, -B 768, -L 1024).
        alpha: weight α of the mimicking term.
        beta: weight β of the generation term.
        mask_ratio: the masked fraction λ of the last layer's tokens.
        student_extra_tokens: leading non-patch tokens in the student's sequence: 1 for
            mmpretrain's ``VisionTransformer`` with its class token (``num_extra_tokens`` of
            the backbone), 2 for ``DistilledVisionTransformer`` (class + distillation), 0
            without a class token.
        teacher_extra_tokens: the same for the teacher.
    """

    weight_arguments = ('alpha', 'beta')

    def __init__(self, student_dims: int, teacher_dims: int, alpha: float = 3e-5,
                 beta: float = 3e-6, mask_ratio: float = 0.5, student_extra_tokens: int = 1,
                 teacher_extra_tokens: int = 1):
        super().__init__()
        if not 0 < mask_ratio <= 1:
            raise ValueError(f'mask_ratio must be in (0, 1] (the loss divides by it), got '
                             f'{mask_ratio}')
        self.student_dims = student_dims
        self.alpha = alpha
        self.beta = beta
        self.mask_ratio = mask_ratio
        self.extra_tokens = dict(student=student_extra_tokens, teacher=teacher_extra_tokens)
        self.align_shallow = nn.ModuleList(
            build_align_layer(student_dims, teacher_dims, 'linear') for _ in range(2))
        self.align_deep = build_align_layer(student_dims, teacher_dims, 'linear')
        self.mask_token = nn.Parameter(torch.zeros(1, 1, teacher_dims))
        self.generation = build_generation_block(teacher_dims)

    def forward(self, student_block0: torch.Tensor, student_block1: torch.Tensor,
                student_final: torch.Tensor, teacher_block0: torch.Tensor,
                teacher_block1: torch.Tensor, teacher_final: torch.Tensor) -> dict:
        student = [self._patch_tokens(x, 'student', name) for x, name in
                   ((student_block0, 'block0'), (student_block1, 'block1'),
                    (student_final, 'final'))]
        teacher = [self._patch_tokens(x, 'teacher', name).detach() for x, name in
                   ((teacher_block0, 'block0'), (teacher_block1, 'block1'),
                    (teacher_final, 'final'))]
        batch = student[0].shape[0]

        mimic = 0
        shallow = zip(self.align_shallow, student[:2], teacher[:2])
        for layer, (align, s, t) in enumerate(shallow):
            aligned = align(s)
            check_same_shape(aligned, t, f'ViTKDLoss block {layer} tokens (after align)',
                             TOKEN_DIMS, TOKEN_HINTS)
            mimic = mimic + ((aligned - t)**2).sum()

        aligned = self.align_deep(student[2])
        check_same_shape(aligned, teacher[2], 'ViTKDLoss final tokens (after align)',
                         TOKEN_DIMS, TOKEN_HINTS)
        generated, masked = self._generate(aligned)
        squared = ((generated - teacher[2])**2).sum(dim=2)
        gen = (squared * masked).sum()
        return dict(mimic=self.alpha * mimic / batch,
                    gen=self.beta * gen / batch / self.mask_ratio)

    def _generate(self, tokens: torch.Tensor):
        """Mask tokens, run the generator on the patch grid; return B×N×D and the B×N mask."""
        batch, num, dims = tokens.shape
        side = math.isqrt(num)
        if side * side != num:
            raise ValueError(f'ViTKDLoss lays the {num} patch tokens out on a square grid, '
                             f'but {num} is not a square: check student_extra_tokens and '
                             'teacher_extra_tokens (the leading class/distillation tokens).')
        masked = random_token_mask(batch, num, self.mask_ratio, tokens.device)
        filled = torch.where(masked.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        grid = filled.transpose(1, 2).reshape(batch, dims, side, side)
        generated = self.generation(grid).flatten(2).transpose(1, 2)
        return generated, masked.to(tokens.dtype)

    def _patch_tokens(self, tokens: torch.Tensor, model: str, name: str) -> torch.Tensor:
        extra = self.extra_tokens[model]
        if tokens.dim() != 3 or tokens.shape[1] <= extra:
            raise ValueError(f'ViTKDLoss {model}_{name}: expects B×L×D tokens with more than '
                             f'{extra} leading extra token(s), got {tuple(tokens.shape)}: tap '
                             "a transformer block ('backbone.layers.0') or the final norm "
                             "('backbone.ln1').")
        if model == 'student' and tokens.shape[2] != self.student_dims:
            raise ValueError(f'ViTKDLoss expects {self.student_dims} student dims, '
                             f'student_{name} {tuple(tokens.shape)} has {tokens.shape[2]}: set '
                             'student_dims to the student\'s embed_dims.')
        return tokens[:, extra:]

