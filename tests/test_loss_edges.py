"""The losses at the edges of what they accept: the ends of documented ranges, token inputs,
labels at the class count. (Mutation testing found these unchecked; see
docs/contributing.md, "Mutation testing".)"""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdistill.losses import FeatureMSELoss, MGDLoss, SimCCDistillLoss, USKDLoss, ViTKDLoss
from mmdistill.losses.box_masks import background_masks
from mmdistill.losses.functional import class_scores


def labelled(*labels):
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(label) for label in labels]


def test_uskd_reads_the_class_token_of_vit_tokens():
    """N×L×D tokens with L != D: the weak classifier reads token 0 of D channels."""
    torch.manual_seed(0)
    loss = USKDLoss(in_channels=8, num_classes=5, token_pool='cls')
    logits, tokens = torch.randn(2, 5), torch.randn(2, 6, 8)
    weak = loss(logits, tokens, labelled(1, 3))['weak']
    smoothed = 0.9 * F.one_hot(torch.tensor([1, 3]), 5).float() + 0.1 / 5
    cross_entropy = -(smoothed * F.log_softmax(loss.fc(tokens[:, 0]), dim=1)).sum(1).mean()
    assert weak.item() == pytest.approx(loss.mu * cross_entropy.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r'\(2, 8, 6\) has 6'):  # 8 tokens of 6 channels
        loss(logits, torch.randn(2, 8, 6), labelled(1, 3))


def test_a_label_equal_to_the_class_count_is_out_of_range():
    scores, soft = class_scores(labelled(0, 4), 5, torch.device('cpu'))
    assert not soft and scores.argmax(1).tolist() == [0, 4]
    with pytest.raises(ValueError, match='outside the logits\' 5 classes'):
        class_scores(labelled(0, 5), 5, torch.device('cpu'))


def test_mgd_masking_everything_generates_from_zeros():
    """mask_ratio=1 is allowed: the generator then sees only zeros, whatever the student."""
    torch.manual_seed(0)
    loss = MGDLoss(student_channels=3, teacher_channels=4, loss_weight=0.5, mask_ratio=1.0)
    student, teacher = torch.randn(2, 3, 5, 5), torch.randn(2, 4, 5, 5)
    from_zeros = loss.generation(torch.zeros(2, 4, 5, 5))
    expected = 0.5 * ((from_zeros - teacher)**2).sum() / 2
    assert loss(student, teacher).item() == pytest.approx(expected.item(), rel=1e-6)
    for ratio in (-0.1, 1.01):
        with pytest.raises(ValueError, match=r'mask_ratio must be in \[0, 1\]'):
            MGDLoss(3, 4, loss_weight=0.5, mask_ratio=ratio)


def test_vitkd_masking_every_token_generates_from_the_mask_token():
    """mask_ratio=1 is allowed: every final-layer token is the mask token (zeros at first)."""
    torch.manual_seed(0)
    loss = ViTKDLoss(student_dims=4, teacher_dims=6, mask_ratio=1.0)
    student = [torch.randn(2, 1 + 9, 4) for _ in range(3)]
    teacher = [torch.randn(2, 1 + 9, 6) for _ in range(3)]
    gen = loss(*student, *teacher)['gen']
    from_mask_token = loss.generation(torch.zeros(2, 6, 3, 3)).flatten(2).transpose(1, 2)
    expected = loss.beta * ((from_mask_token - teacher[2][:, 1:])**2).sum() / 2 / 1.0
    assert gen.item() == pytest.approx(expected.item(), rel=1e-6)
    for ratio in (0.0, 1.5):
        with pytest.raises(ValueError, match=r'mask_ratio must be in \(0, 1\]'):
            ViTKDLoss(4, 6, mask_ratio=ratio)


@pytest.mark.parametrize('shape', [(2, 4), (2, 1, 4)])
def test_vitkd_needs_patch_tokens_after_the_extra_ones(shape):
    """A 2-D input, or a sequence with only the class token, is not a block's tokens."""
    loss = ViTKDLoss(student_dims=4, teacher_dims=6)
    student = [torch.randn(2, 10, 4) for _ in range(3)]
    teacher = [torch.randn(2, 10, 6) for _ in range(3)]
    student[0] = torch.randn(*shape)
    with pytest.raises(ValueError, match='expects B×L×D tokens with more than 1 leading'):
        loss(*student, *teacher)


def test_feature_mse_mean_reduction_is_weighted_not_divided():
    loss = FeatureMSELoss(2, 2, reduction='mean', loss_weight=0.5)  # same channels: no align
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    assert loss(student, teacher).item() == pytest.approx(0.5 * (1 + 4 + 9 + 0) / 4)


def test_simcc_kd_below_one_beta_is_a_temperature_above_one():
    """beta = 0.5 is allowed (τ = 1/β = 2): two bins, teacher logits (0, 0), student (0, 2)."""
    loss = SimCCDistillLoss(beta=0.5, loss_weight=1.0)
    student_x = torch.tensor([[[0.0, 2.0]]])
    teacher_x = torch.zeros(1, 1, 2)
    # per axis: KL(uniform ‖ softmax((0, 1))) = log((1 + e) / 2) - 1/2, both axes the same
    expected = 2 * (math.log((1 + math.e) / 2) - 0.5)
    assert loss(student_x, student_x, teacher_x, teacher_x).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match='beta must be positive'):
        SimCCDistillLoss(beta=0.0)


def test_fgd_background_mask_with_a_single_background_cell():
    """A box covering all but one cell: that cell carries the image's whole background
    weight (1, not 1/2)."""
    foreground = torch.ones(1, 2, 2)
    foreground[0, 1, 1] = 0
    expected = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    assert torch.equal(background_masks(foreground), expected)
    assert torch.equal(background_masks(torch.ones(1, 2, 2)), torch.zeros(1, 2, 2))
