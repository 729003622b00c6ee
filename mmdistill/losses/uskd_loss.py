import torch
import torch.nn.functional as F
from torch import nn

from mmdistill.registry import MODELS
from .functional import (class_scores, drop_classes, self_target_weights,
                         weighted_target_nll)

RANK_TERMS = ('log_prob', 'prob')
TOKEN_POOLS = ('cls', 'mean')
RANK_EPS = 1e-6  # keeps the rank's normalisers finite when the targets hold all the mass


@MODELS.register_module()
class USKDLoss(nn.Module):
    """Universal self-knowledge distillation, without a teacher (Yang et al., "From Knowledge
    Distillation to Self-Knowledge Distillation: A Unified Approach with Normalized Loss and
    Customized Soft Labels", ICCV 2023).

    With the student's logits ``z``, ``p = softmax(z)``, its target class(es) ``y`` with label
    value ``v`` (1 for a hard label; the top-2 classes and their scores under Mixup/CutMix):

    .. math::
        w_{n,y} = p_{n,y}^2 + v_{n,y} - \\tfrac{1}{N}\\textstyle\\sum_m p_{m,y}^2
            \\;(0 \\text{ where } v = 0),\\qquad
        L_{target} = -\\frac{1}{N}\\sum_n \\sum_y w_{n,y} \\log p_{n,y}

    .. math::
        z^w = \\mathrm{Linear}(\\mathrm{pool}(f_{mid})),\\qquad
        L_{weak} = -\\frac{1}{N}\\sum_n \\sum_i (0.9\\, s_{n,i} + 0.1/C) \\log
            \\mathrm{softmax}(z^w_n)_i

    (``s`` the one-hot or soft label), and non-target labels from Zipf's law: every class is
    ranked by :math:`r_i = \\frac{w^w_i}{1-\\sum_y w^w_y} + \\frac{u_i}{1-\\sum_y u_y}`
    (:math:`w^w = \\mathrm{softmax}(z^w)`); the class at rank k (0-based, descending) gets
    :math:`1/(k+1)`; the targets are dropped and the rest renormalised to
    :math:`\\zeta_{n,i}`;

    .. math::
        L_{non} = -\\frac{1}{N}\\sum_n \\sum_{i \\notin y} \\zeta_{n,i}
            \\log \\mathrm{softmax}(z_{n,\\neg y})_i,\\qquad
        L = \\alpha L_{target} + \\beta L_{non} + \\mu L_{weak}.

    ``w`` and ``ζ`` are constants (no gradient); ``L_weak`` trains the loss's own linear layer
    and, through the tapped feature, the student's earlier stages. The three terms are logged
    as ``target``, ``non_target`` and ``weak``, added to the student's own cross-entropy.

    In the rank, :math:`u` is the student's log-probability (``rank_term='log_prob'``, what
    the reference code computes and what produced the reported numbers) or its probability
    (``'prob'``, the form the paper describes).

    Args:
        in_channels: channels of the tapped mid-level feature (ResNet-18 ``layer3``: 256,
            ResNet-50: 1024, MobileNetV2 ``layer7``: 320, DeiT-T: 192).
        num_classes: the number of classes.
        alpha: weight α of the target term.
        beta: weight β of the non-target term.
        mu: weight μ of the weak-supervision term.
        rank_term: ``'log_prob'`` or ``'prob'``, see above.
        token_pool: how an N×L×D token feature (a ViT block's output) becomes N×D: ``'cls'``
            takes token 0 (mmpretrain puts the class token first), ``'mean'`` averages all.
            N×C×H×W features are average-pooled; N×C features are used as they are.
    """

    weight_arguments = ('alpha', 'beta', 'mu')

    def __init__(self, in_channels: int, num_classes: int, alpha: float = 1.0,
                 beta: float = 0.1, mu: float = 0.005, rank_term: str = 'log_prob',
                 token_pool: str = 'cls'):
        super().__init__()
        if rank_term not in RANK_TERMS:
            raise ValueError(f"rank_term must be one of {RANK_TERMS}, got '{rank_term}'")
        if token_pool not in TOKEN_POOLS:
            raise ValueError(f"token_pool must be one of {TOKEN_POOLS}, got '{token_pool}'")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta
        self.mu = mu
        self.rank_term = rank_term
        self.token_pool = token_pool
        self.fc = nn.Linear(in_channels, num_classes)

    def pool(self, feature: torch.Tensor) -> torch.Tensor:
        """N×C×H×W (mean over H, W), N×L×D tokens (``token_pool``) or N×C, to N×C."""
        if feature.dim() == 4:
            return feature.mean(dim=(2, 3))
        if feature.dim() == 3:
            return feature[:, 0] if self.token_pool == 'cls' else feature.mean(dim=1)
        if feature.dim() == 2:
            return feature
        raise ValueError(f'USKDLoss cannot pool a student feature of shape '
                         f'{tuple(feature.shape)}: tap a module giving N×C×H×W, N×L×D or N×C.')

    def forward(self, student_logits: torch.Tensor, student_feature: torch.Tensor,
                data_samples) -> dict:
        self._check_shapes(student_logits, student_feature)
        num_classes = self.num_classes
        scores, soft = class_scores(data_samples, num_classes, student_logits.device)
        value, target = scores.topk(2 if soft else 1, dim=1)

        log_p = F.log_softmax(student_logits, dim=1)
        weight = self_target_weights(log_p.gather(1, target).exp(), value, power=2)
        target_loss = weighted_target_nll(log_p, target, weight)

        weak_logits = self.fc(self.pool(student_feature))
        smoothed = 0.9 * scores + 0.1 / num_classes
        weak_loss = -(smoothed * F.log_softmax(weak_logits, dim=1)).sum(dim=1).mean()

        zipf = self._zipf_non_target_labels(weak_logits.detach(), log_p.detach(), target)
        log_q = F.log_softmax(drop_classes(student_logits, target), dim=1)
        non_target_loss = -(zipf * log_q).sum(dim=1).mean()
        return dict(target=self.alpha * target_loss,
                    non_target=self.beta * non_target_loss,
                    weak=self.mu * weak_loss)

    def _zipf_non_target_labels(self, weak_logits: torch.Tensor, log_p: torch.Tensor,
                                target: torch.Tensor) -> torch.Tensor:
        """Rank every class, give rank k the value 1/(k+1), drop the targets, renormalise."""
        weak_p = F.softmax(weak_logits, dim=1)
        student = log_p if self.rank_term == 'log_prob' else log_p.exp()
        rank_score = (
            weak_p / (1 - weak_p.gather(1, target).sum(1, keepdim=True) + RANK_EPS) +
            student / (1 - student.gather(1, target).sum(1, keepdim=True) + RANK_EPS))
        position = rank_score.argsort(dim=1, descending=True).argsort(dim=1)
        zipf = 1.0 / (position + 1).to(log_p.dtype)
        non_target = drop_classes(zipf, target)
        return non_target / non_target.sum(dim=1, keepdim=True)

    def _check_shapes(self, logits: torch.Tensor, feature: torch.Tensor) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f'USKDLoss expects N×{self.num_classes} logits, got '
                             f'{tuple(logits.shape)}: tap the final linear layer and set '
                             'num_classes to its output size.')
        channels = feature.shape[-1] if feature.dim() == 3 else feature.shape[1]
        if channels != self.in_channels:
            raise ValueError(f'USKDLoss expects a mid-level feature with {self.in_channels} '
                             f'channels, the tapped one {tuple(feature.shape)} has {channels}: '
                             'set in_channels to match the tapped module.')
        if feature.shape[0] != logits.shape[0]:
            raise ValueError(f'USKDLoss: feature {tuple(feature.shape)} and logits '
                             f'{tuple(logits.shape)} have different batch sizes.')
