"""Loss math shared by several distillation methods (written once, used by each)."""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F


def softmax_kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                          tau: float = 1.0, dim: int = -1) -> torch.Tensor:
    """``KL(softmax(z_t/τ) ‖ softmax(z_s/τ))`` summed over ``dim``, one value per other index.

    The teacher side is detached: gradients reach only the student logits.
    """
    log_p_student = F.log_softmax(student_logits / tau, dim=dim)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / tau, dim=dim)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=dim)


SPATIAL_SIZE = 'spatial size'
# Why the size of compared maps differs most often, and what makes it agree.
OWN_INPUT_SIZE = ("A teacher with its own inputs (inputs='own') and an input_size other than "
                  "the student's input size gives maps of another size")
CLASSES_HINT = ("Student and teacher must predict the same classes: tap each model's final "
                'classification layer (its conv or fc), both heads with one num_classes.')
LOGIT_SIZE_HINT = ('Logits are compared position by position, so both must have one size: '
                   f'tap heads of one output stride. {OWN_INPUT_SIZE}: give it the student\'s '
                   'input size, or no input_size.')
FEATURE_SIZE_HINT = (f'Tap modules with the same spatial size (stride). {OWN_INPUT_SIZE} at the '
                     'same stride: tools/analysis/print_taps.py lists the modules of each size.')
FEATURE_HINTS = {SPATIAL_SIZE: FEATURE_SIZE_HINT,
                 'channels': "Set teacher_channels to the teacher feature's channels."}


def dim_names(ndim: int, named: Dict[int, str], others: str = SPATIAL_SIZE) -> List[str]:
    """A name for each of ``ndim`` dimensions: ``batch`` for the first, ``named[i]`` (``i``
    may count from the end) where given, ``others`` for the rest."""
    names = ['batch'] + [others] * (ndim - 1)
    for dim, name in named.items():
        names[dim] = name
    return names


def shape_differences(student: Sequence[int], teacher: Sequence[int],
                      names: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """``name -> (student's, teacher's)`` for each named quantity whose sizes differ (the
    dimensions of one name, such as H and W of ``spatial size``, written together: ``8×8``)."""
    if len(student) != len(teacher):
        return {'number of dimensions': (str(len(student)), str(len(teacher)))}
    dims: Dict[str, List[int]] = {}
    for dim, name in enumerate(names):
        dims.setdefault(name, []).append(dim)
    return {name: tuple('×'.join(str(shape[d]) for d in found) for shape in (student, teacher))
            for name, found in dims.items() if any(student[d] != teacher[d] for d in found)}


def check_same_shape(student: torch.Tensor, teacher: torch.Tensor, what: str,
                     names: Sequence[str], hints: Dict[str, str]) -> None:
    """Raise ``ValueError`` when student and teacher tensors differ in shape, saying in what
    (``names``: one per dimension, :func:`dim_names`) and, for each quantity that differs,
    how to make it agree (``hints``, by name)."""
    if student.shape == teacher.shape:
        return
    differences = shape_differences(tuple(student.shape), tuple(teacher.shape), names)
    described = ' and '.join(f'{name} ({ours} vs {theirs})'
                             for name, (ours, theirs) in differences.items())
    advice = ' '.join(dict.fromkeys(hints[name] for name in differences if name in hints))
    raise ValueError(f'{what}: student {tuple(student.shape)} and teacher '
                     f'{tuple(teacher.shape)} differ in {described}.'
                     + (f' {advice}' if advice else ''))


def class_scores(data_samples: Sequence, num_classes: int,
                 device: torch.device) -> Tuple[torch.Tensor, bool]:
    """The batch's targets as an N×C score matrix, and whether they are soft.

    mmpretrain's ``DataSample`` holds ``gt_label`` (the class index) and, once batch
    augments (Mixup, CutMix) or a one-hot preprocessor ran, ``gt_score`` (a C-vector). As in
    mmpretrain's own heads, ``gt_score`` wins when present (soft); otherwise ``gt_label``
    becomes a one-hot row (hard).
    """
    if not data_samples:
        raise ValueError('this loss needs the batch\'s data samples with gt_label or '
                         'gt_score (mmpretrain DataSample); got none')
    if all('gt_score' in sample for sample in data_samples):
        scores = torch.stack([sample.gt_score for sample in data_samples]).to(device)
        if scores.dim() != 2 or scores.shape[1] != num_classes:
            raise ValueError(f'gt_score of the batch has shape {tuple(scores.shape)}, the '
                             f'logits have {num_classes} classes: the data samples and the '
                             'model must agree on the number of classes.')
        return scores.float(), True
    labels = []
    for sample in data_samples:
        if 'gt_label' not in sample:
            raise ValueError('a data sample has neither gt_label nor gt_score: this loss '
                             'needs the class labels of the batch')
        label = torch.as_tensor(sample.gt_label).reshape(-1)
        if label.numel() != 1:
            raise ValueError(f'gt_label {label.tolist()} holds {label.numel()} labels; this '
                             'loss is for single-label classification (one class per image)')
        labels.append(label)
    labels = torch.cat(labels).long()
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f'gt_label values {labels.tolist()} fall outside the logits\' '
                         f'{num_classes} classes')
    return F.one_hot(labels, num_classes).float().to(device), False


def drop_classes(values: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Remove the columns ``classes`` (N×k indices) from N×C ``values``: N×(C−k), the other
    columns in their order. Works with fixed shapes (no boolean indexing)."""
    keep = torch.ones_like(values, dtype=torch.bool).scatter(1, classes, False)
    order = torch.sort(keep.to(torch.uint8), dim=1, descending=True, stable=True).indices
    return values.gather(1, order[:, :values.shape[1] - classes.shape[1]])


def weighted_target_nll(log_p_student: torch.Tensor, target: torch.Tensor,
                        weight: torch.Tensor) -> torch.Tensor:
    """``−mean_n Σ_k weight[n,k] · log p_s[n, target[n,k]]``: the target term that NKD
    (weight: the teacher's target probability), tf-NKD and USKD (weights from the student's
    own target probability, :func:`self_target_weights`) share. ``target`` and ``weight``
    are N×k (k = 1 for a hard label, 2 for the top-2 classes of a Mixup/CutMix score)."""
    return -(weight * log_p_student.gather(1, target)).sum(dim=1).mean()


def self_target_weights(p_target: torch.Tensor, value: torch.Tensor,
                        power: float) -> torch.Tensor:
    """Teacher-free soft targets ``w = s^power + v − mean_batch(s^power)``, ``w = 0`` where
    ``v = 0``, detached: ``s`` the student's probability of each target class (N×k) and ``v``
    its label value (1 for a hard label, the class's score under Mixup/CutMix). tf-NKD uses
    ``power=1``, USKD ``power=2``."""
    s = p_target.detach()**power
    weight = s + value - s.mean(dim=0, keepdim=True)
    return torch.where(value == 0, torch.zeros_like(weight), weight)
