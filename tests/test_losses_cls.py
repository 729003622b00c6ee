"""NKD, tf-NKD, USKD, ViTKD and MGD: values worked out by hand, gradients, masks, errors, and
each loss inside the Distiller on tiny real mmpretrain models."""
import math
import os.path as osp

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from conftest import classification_batch, tiny_classifier, write_config
from mmdistill.distillers import Distiller
from mmdistill.losses import MGDLoss, NKDLoss, TfNKDLoss, USKDLoss, ViTKDLoss
from mmdistill.losses.functional import drop_classes
from mmdistill.losses.mgd_loss import random_keep_mask
from mmdistill.losses.vitkd_loss import random_token_mask

ln = math.log


def samples_with_labels(*labels):
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(label) for label in labels]


def samples_with_scores(scores, labels):
    """Data samples as mmpretrain's Mixup leaves them: the hard gt_label and a soft gt_score."""
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(label).set_gt_score(torch.tensor(score))
            for score, label in zip(scores, labels)]


def set_identity_generator(generation: nn.Sequential) -> None:
    """Make Conv3×3 → ReLU → Conv3×3 the identity on non-negative inputs."""
    with torch.no_grad():
        for conv in (generation[0], generation[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            for c in range(conv.weight.shape[0]):
                conv.weight[c, c, 1, 1] = 1.0


def set_linear(layer: nn.Linear, weight) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.zero_()


# ------------------------------------------------------------------------------ shared math
def test_drop_classes_keeps_the_other_columns_in_order():
    values = torch.tensor([[0., 1., 2., 3.], [4., 5., 6., 7.]])
    assert drop_classes(values, torch.tensor([[2], [0]])).tolist() == [[0., 1., 3.],
                                                                      [5., 6., 7.]]
    assert drop_classes(values, torch.tensor([[3, 1], [1, 2]])).tolist() == [[0., 2.],
                                                                             [4., 7.]]


# ------------------------------------------------------------------------------------- NKD
def test_nkd_by_hand():
    # A: y=0, teacher softmax [1/2, 1/4, 1/4], student softmax [1/5, 3/5, 1/5]
    # B: y=2, teacher softmax [1/8, 3/8, 4/8], student softmax [2/8, 1/8, 5/8]
    teacher = torch.tensor([[ln(2), 0., 0.], [0., ln(3), ln(4)]])
    student = torch.tensor([[0., ln(3), 0.], [ln(2), 0., ln(5)]])
    loss = NKDLoss(tau=1.0, gamma=1.5)(student, teacher, samples_with_labels(0, 2))
    target = (-0.5 * ln(1 / 5) - 0.5 * ln(5 / 8)) / 2
    # non-target softmaxes: A teacher [1/2, 1/2], student [3/4, 1/4];
    #                       B teacher [1/4, 3/4], student [2/3, 1/3]
    non_a = -1.5 * (0.5 * ln(3 / 4) + 0.5 * ln(1 / 4))
    non_b = -1.5 * (1 / 4 * ln(2 / 3) + 3 / 4 * ln(1 / 3))
    assert loss['target'].item() == pytest.approx(target)
    assert loss['non_target'].item() == pytest.approx((non_a + non_b) / 2)


def test_nkd_temperature_and_weight_by_hand():
    # y=0; the non-target logits over T=2: teacher [ln3, 0] -> [3/4, 1/4], student [0, ln3]
    teacher = torch.tensor([[0., 2 * ln(3), 0.]])
    student = torch.tensor([[0., 0., 2 * ln(3)]])
    loss = NKDLoss(tau=2.0, gamma=1.0, loss_weight=0.5)(student, teacher,
                                                         samples_with_labels(0))
    # the target term has no temperature: both target probabilities are 1/(1+9+1)
    assert loss['target'].item() == pytest.approx(0.5 * -(1 / 11) * ln(1 / 11))
    assert loss['non_target'].item() == pytest.approx(
        0.5 * -1.0 * 2**2 * (3 / 4 * ln(1 / 4) + 1 / 4 * ln(3 / 4)))


def test_nkd_soft_labels_use_the_top_score_not_gt_label():
    # Mixup left gt_label=0 but gt_score [0.3, 0.7, 0]: the target is class 1.
    teacher = torch.tensor([[ln(2), 0., 0.]])  # [1/2, 1/4, 1/4]
    student = torch.tensor([[0., ln(3), 0.]])  # [1/5, 3/5, 1/5]
    samples = samples_with_scores([[0.3, 0.7, 0.0]], labels=[0])
    loss = NKDLoss()(student, teacher, samples)
    assert loss['target'].item() == pytest.approx(-0.25 * ln(3 / 5))
    # without class 1: teacher [ln2, 0] -> [2/3, 1/3], student [0, 0] -> [1/2, 1/2]
    assert loss['non_target'].item() == pytest.approx(-1.5 * (2 / 3 * ln(0.5) + 1 / 3 * ln(0.5)))


def test_nkd_gradient_reaches_student_only():
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    loss = NKDLoss(tau=2.0)(student, teacher, samples_with_labels(0, 1, 2, 3))
    sum(loss.values()).backward()
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_nkd_errors_name_the_problem():
    with pytest.raises(ValueError, match=r'student \(2, 5\) and teacher \(2, 6\)'):
        NKDLoss()(torch.zeros(2, 5), torch.zeros(2, 6), samples_with_labels(0, 1))
    with pytest.raises(ValueError, match=r'N×classes logits, got shape \(2, 5, 3\)'):
        NKDLoss()(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), samples_with_labels(0, 1))
    with pytest.raises(ValueError, match=r'gt_label values \[0, 7\] fall outside .* 5 classes'):
        NKDLoss()(torch.zeros(2, 5), torch.zeros(2, 5), samples_with_labels(0, 7))
    with pytest.raises(ValueError, match="needs the batch's data samples"):
        NKDLoss()(torch.zeros(2, 5), torch.zeros(2, 5), None)
    with pytest.raises(ValueError, match='tau must be positive'):
        NKDLoss(tau=0)


# ---------------------------------------------------------------------------------- tf-NKD
def test_tf_nkd_by_hand():
    # A: y=0, softmax [1/2, 1/4, 1/4]; B: y=2, softmax [1/6, 2/6, 3/6]
    student = torch.tensor([[ln(2), 0., 0.], [0., ln(2), ln(3)]])
    loss = TfNKDLoss(loss_weight=2.0)(student, samples_with_labels(0, 2))
    # s = [1/2, 1/2], mean 1/2: w = s + 1 - 1/2 = [1, 1]
    assert loss.item() == pytest.approx(2.0 * -(ln(1 / 2) + ln(1 / 2)) / 2)
    # B: y=1 instead: s = [1/2, 1/3], mean 5/12, w = [1 + 1/12, 1 - 1/12]
    loss = TfNKDLoss()(student, samples_with_labels(0, 1))
    assert loss.item() == pytest.approx(-(13 / 12 * ln(1 / 2) + 11 / 12 * ln(1 / 3)) / 2)


def test_tf_nkd_soft_labels_take_the_top_two_scores():
    # Mixup: gt_score [0.7, 0, 0.3] (gt_label 1 ignored): targets 0, 2 with v = .7, .3; one
    # image, so w = s + v - mean(s) = v
    student = torch.tensor([[ln(2), 0., 0.]])  # [1/2, 1/4, 1/4]
    loss = TfNKDLoss()(student, samples_with_scores([[.7, 0., .3]], [1]))
    assert loss.item() == pytest.approx(-(0.7 * ln(1 / 2) + 0.3 * ln(1 / 4)))


def test_tf_nkd_target_is_a_constant():
    """The gradient is that of a cross-entropy with fixed weights w: (w/N)(p − onehot)."""
    student = torch.tensor([[ln(2), 0., 0.], [0., ln(2), ln(3)]], requires_grad=True)
    TfNKDLoss()(student, samples_with_labels(0, 1)).backward()
    p = torch.tensor([[1 / 2, 1 / 4, 1 / 4], [1 / 6, 2 / 6, 3 / 6]])
    onehot = torch.tensor([[1., 0., 0.], [0., 1., 0.]])
    w = torch.tensor([[13 / 12], [11 / 12]])
    assert torch.allclose(student.grad, w / 2 * (p - onehot), atol=1e-6)


def test_tf_nkd_errors_name_the_problem():
    with pytest.raises(ValueError, match=r'N×classes logits, got shape \(2, 5, 3\)'):
        TfNKDLoss()(torch.zeros(2, 5, 3), samples_with_labels(0, 1))
    with pytest.raises(ValueError, match=r'gt_label values \[0, 7\] fall outside .* 5 classes'):
        TfNKDLoss()(torch.zeros(2, 5), samples_with_labels(0, 7))


# ------------------------------------------------------------------------------------ USKD
def uskd_by_hand_case(rank_term):
    """N=2, C=3. A: logits [ln4, ln3, 0] (p = [4/8, 3/8, 1/8]), y=0, weak logits [0, 0, ln4]
    (w = [1/6, 1/6, 4/6]); B: logits [0, ln2, ln3] (p = [1/6, 2/6, 3/6]), y=1, weak logits
    0 (w uniform). The features [1, 0] and [0, 1] pick the weak logits from the fc columns."""
    loss = USKDLoss(in_channels=2, num_classes=3, alpha=2.0, beta=0.5, mu=0.1,
                    rank_term=rank_term)
    set_linear(loss.fc, [[0., 0.], [0., 0.], [ln(4), 0.]])
    logits = torch.tensor([[ln(4), ln(3), 0.], [0., ln(2), ln(3)]])
    features = torch.tensor([[1., 0.], [0., 1.]])
    return loss(logits, features, samples_with_labels(0, 1))


def uskd_target_and_weak_by_hand():
    # s = p[y]: 1/2 and 1/3; mean s² = (1/4 + 1/9)/2 = 13/72; w = s² + 1 - 13/72
    w_a, w_b = 1 / 4 + 1 - 13 / 72, 1 / 9 + 1 - 13 / 72
    target = -(w_a * ln(1 / 2) + w_b * ln(1 / 3)) / 2
    # weak targets 0.9·onehot + 0.1/3; A's weak softmax [1/6, 1/6, 4/6], B's uniform
    ce_a = -((0.9 + 0.1 / 3) * ln(1 / 6) + 0.1 / 3 * ln(1 / 6) + 0.1 / 3 * ln(4 / 6))
    ce_b = ln(3)
    return target, (ce_a + ce_b) / 2


def test_uskd_by_hand_with_the_reference_rank():
    loss = uskd_by_hand_case('log_prob')
    target, weak = uskd_target_and_weak_by_hand()
    # rank = w/(1 - w_y) + log p/(1 - log p_y)
    # A: [1/5 + ln(1/2)/(1 + ln2), 1/5 + ln(3/8)/(1 + ln2), 4/5 + ln(1/8)/(1 + ln2)]
    #    = [-0.21, -0.38, -0.43]: order 0, 1, 2 -> Zipf of classes 1, 2: [1/2, 1/3] -> [.6, .4]
    # B: 1/2 + ln(p)/(1 + ln3) = [-0.35, -0.02, 0.17]: order 2, 1, 0 -> classes 0, 2: [1/3, 1]
    #    -> [1/4, 3/4]. The student's non-target softmaxes: A [3/4, 1/4], B [1/4, 3/4].
    non_a = -(0.6 * ln(3 / 4) + 0.4 * ln(1 / 4))
    non_b = -(1 / 4 * ln(1 / 4) + 3 / 4 * ln(3 / 4))
    assert loss['target'].item() == pytest.approx(2.0 * target)
    assert loss['weak'].item() == pytest.approx(0.1 * weak)
    assert loss['non_target'].item() == pytest.approx(0.5 * (non_a + non_b) / 2)


def test_uskd_by_hand_with_the_paper_rank():
    loss = uskd_by_hand_case('prob')
    target, weak = uskd_target_and_weak_by_hand()
    # rank = w/(1 - w_y) + p/(1 - p_y); A: [1/5 + 1, 1/5 + 3/4, 4/5 + 1/4] = [1.2, .95, 1.05]:
    # order 0, 2, 1 -> classes 1, 2: [1/3, 1/2] -> [.4, .6]; B as with log-probabilities.
    non_a = -(0.4 * ln(3 / 4) + 0.6 * ln(1 / 4))
    non_b = -(1 / 4 * ln(1 / 4) + 3 / 4 * ln(3 / 4))
    assert loss['target'].item() == pytest.approx(2.0 * target)
    assert loss['weak'].item() == pytest.approx(0.1 * weak)
    assert loss['non_target'].item() == pytest.approx(0.5 * (non_a + non_b) / 2)


def test_uskd_soft_labels_take_the_top_two_scores():
    # Mixup: gt_score [0.6, 0, 0.4, 0] (gt_label 1 is ignored): targets 0 and 2 with v = .6, .4
    loss = USKDLoss(in_channels=3, num_classes=4)
    nn.init.zeros_(loss.fc.weight)
    nn.init.zeros_(loss.fc.bias)  # weak softmax uniform: the rank follows the student alone
    logits = torch.tensor([[ln(4), ln(2), ln(1.5), ln(0.5)]])  # p = [.5, .25, .1875, .0625]
    out = loss(logits, torch.randn(1, 3, 2, 2), samples_with_scores([[.6, 0., .4, 0.]], [1]))
    # one image: w = p² + v - mean(p²) = v
    assert out['target'].item() == pytest.approx(-(0.6 * ln(0.5) + 0.4 * ln(0.1875)))
    # weak targets 0.9·score + 0.1/4 sum to 1; against a uniform softmax that is ln 4
    assert out['weak'].item() == pytest.approx(0.005 * ln(4))
    # order 0, 1, 2, 3: classes 1 and 3 get 1/2 and 1/4 -> [2/3, 1/3]; the student's softmax
    # over [ln2, ln0.5] is [.8, .2]
    assert out['non_target'].item() == pytest.approx(0.1 * -(2 / 3 * ln(0.8) + 1 / 3 * ln(0.2)))


def test_uskd_pools_feature_maps_and_takes_the_class_token():
    loss = USKDLoss(in_channels=2, num_classes=3)
    feature_map = torch.tensor([[[[1., 3.]], [[2., 2.]]]])  # 1×2×1×2: mean [2, 2]
    tokens = torch.tensor([[[5., 6.], [0., 0.]]])  # class token first
    assert loss.pool(feature_map).tolist() == [[2., 2.]]
    assert loss.pool(tokens).tolist() == [[5., 6.]]
    assert USKDLoss(2, 3, token_pool='mean').pool(tokens).tolist() == [[2.5, 3.]]


def test_uskd_gradient_reaches_student_and_its_fc():
    loss = USKDLoss(in_channels=4, num_classes=5)
    logits = torch.randn(3, 5, requires_grad=True)
    feature = torch.randn(3, 4, 2, 2, requires_grad=True)
    sum(loss(logits, feature, samples_with_labels(0, 3, 4)).values()).backward()
    assert logits.grad.abs().sum() > 0
    assert feature.grad.abs().sum() > 0  # the weak head trains the student's earlier stages
    assert loss.fc.weight.grad.abs().sum() > 0


def test_uskd_errors_name_the_problem():
    loss = USKDLoss(in_channels=4, num_classes=5)
    with pytest.raises(ValueError, match=r'N×5 logits, got \(2, 6\)'):
        loss(torch.zeros(2, 6), torch.zeros(2, 4), samples_with_labels(0, 1))
    with pytest.raises(ValueError, match=r'4 channels, the tapped one \(2, 8, 3, 3\) has 8'):
        loss(torch.zeros(2, 5), torch.zeros(2, 8, 3, 3), samples_with_labels(0, 1))
    with pytest.raises(ValueError, match=r'gt_score of the batch has shape \(2, 3\)'):
        loss(torch.zeros(2, 5), torch.zeros(2, 4), samples_with_scores([[1., 0., 0.]] * 2,
                                                                       [0, 0]))
    with pytest.raises(ValueError, match='rank_term must be one of'):
        USKDLoss(4, 5, rank_term='rank')


# ----------------------------------------------------------------------------------- ViTKD
def vitkd_tokens(batch, extra, patch_value, extra_value, dims):
    """B×(extra + 4)×dims tokens: ``extra`` leading tokens, then a 2×2 patch grid."""
    return torch.cat([torch.full((batch, extra, dims), float(extra_value)),
                      torch.full((batch, 4, dims), 0.0) + torch.tensor(patch_value)], dim=1)


def test_vitkd_by_hand():
    # Student dims 2 with 1 leading token, teacher dims 1 with 2 (DeiT: class + distillation);
    # the leading tokens are ±1000 and would dominate if they were not dropped.
    loss = ViTKDLoss(student_dims=2, teacher_dims=1, alpha=2.0, beta=3.0, mask_ratio=0.5,
                     student_extra_tokens=1, teacher_extra_tokens=2)
    set_linear(loss.align_shallow[0], [[1., 1.]])
    set_linear(loss.align_shallow[1], [[2., 0.]])
    set_linear(loss.align_deep, [[1., 0.]])
    set_identity_generator(loss.generation)
    with torch.no_grad():
        loss.mask_token.fill_(0.5)
    student = vitkd_tokens(2, 1, [1., 2.], 1000, 2)
    out = loss(student, student, student, vitkd_tokens(2, 2, [1.], -1000, 1),
               vitkd_tokens(2, 2, [0.], -1000, 1), vitkd_tokens(2, 2, [2.], -1000, 1))
    # block 0: (1+2 - 1)² = 4, block 1: (2·1 - 0)² = 4, on 4 tokens × 2 images: 64, / B = 2
    assert out['mimic'].item() == pytest.approx(2.0 * 64 / 2)
    # 2 of 4 tokens masked per image -> the mask token 0.5 through the identity generator:
    # (0.5 - 2)² · 2 tokens · 2 images = 9, / B = 2, / λ = 0.5. Kept tokens ((1-2)²) do not count.
    assert out['gen'].item() == pytest.approx(3.0 * 9 / 2 / 0.5)


def test_vitkd_align_layers_only_when_dims_differ():
    same = ViTKDLoss(student_dims=8, teacher_dims=8)
    assert isinstance(same.align_deep, nn.Identity)
    assert all(isinstance(a, nn.Identity) for a in same.align_shallow)
    other = ViTKDLoss(student_dims=8, teacher_dims=16)
    assert isinstance(other.align_deep, nn.Linear) and other.align_deep.out_features == 16
    assert all(isinstance(a, nn.Linear) for a in other.align_shallow)


def test_vitkd_token_mask_counts_and_seed():
    torch.manual_seed(0)
    first = random_token_mask(4, 49, 0.5, torch.device('cpu'))
    torch.manual_seed(0)
    again = random_token_mask(4, 49, 0.5, torch.device('cpu'))
    torch.manual_seed(1)
    other = random_token_mask(4, 49, 0.5, torch.device('cpu'))
    assert first.sum(dim=1).tolist() == [49 - 24] * 4  # keeps int(49 · 0.5) = 24 per image
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first[0], first[1])  # each image draws its own mask


def test_vitkd_loss_follows_the_seed():
    loss = ViTKDLoss(student_dims=4, teacher_dims=4)
    torch.manual_seed(5)
    tokens = [torch.randn(2, 17, 4) for _ in range(6)]

    def gen_with_seed(seed):
        torch.manual_seed(seed)
        return loss(*tokens)['gen'].item()

    assert gen_with_seed(0) == gen_with_seed(0)
    assert gen_with_seed(0) != gen_with_seed(1)


def test_vitkd_gradient_reaches_student_and_its_layers_not_teacher():
    loss = ViTKDLoss(student_dims=4, teacher_dims=6)
    student = [torch.randn(2, 17, 4, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(2, 17, 6, requires_grad=True) for _ in range(3)]
    sum(loss(*student, *teacher).values()).backward()
    assert all(s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in teacher)
    for layer in (*loss.align_shallow, loss.align_deep, loss.generation[0],
                  loss.generation[2]):
        assert layer.weight.grad.abs().sum() > 0
    assert loss.mask_token.grad.abs().sum() > 0


def test_vitkd_errors_name_the_problem():
    loss = ViTKDLoss(student_dims=4, teacher_dims=4)
    good = torch.zeros(2, 17, 4)
    with pytest.raises(ValueError, match=r'block 1 tokens .*student \(2, 16, 4\) and teacher '
                                         r'\(2, 64, 4\)'):
        loss(good, good, good, good, torch.zeros(2, 65, 4), good)
    with pytest.raises(ValueError, match='15 is not a square'):
        ViTKDLoss(4, 4, student_extra_tokens=2, teacher_extra_tokens=2)(*[good] * 6)
    with pytest.raises(ValueError, match=r'4 student dims, student_final \(2, 17, 8\) has 8'):
        loss(good, good, torch.zeros(2, 17, 8), good, good, good)
    with pytest.raises(ValueError, match='mask_ratio must be in'):
        ViTKDLoss(4, 4, mask_ratio=0)


# ------------------------------------------------------------------------------------- MGD
def test_mgd_align_conv_only_when_channels_differ():
    assert isinstance(MGDLoss(8, 8, loss_weight=1, mask_ratio=0.5).align, nn.Identity)
    align = MGDLoss(4, 8, loss_weight=1, mask_ratio=0.5).align
    assert isinstance(align, nn.Conv2d) and align.kernel_size == (1, 1)
    assert (align.in_channels, align.out_channels) == (4, 8)


def test_mgd_by_hand_nothing_and_everything_masked():
    loss = MGDLoss(student_channels=1, teacher_channels=2, loss_weight=0.5, mask_ratio=0.0)
    with torch.no_grad():
        loss.align.weight.copy_(torch.tensor([2., 3.]).view(2, 1, 1, 1))
        loss.align.bias.zero_()
    set_identity_generator(loss.generation)
    student, teacher = torch.ones(2, 1, 2, 2), torch.full((2, 2, 2, 2), 1.0)
    # λ=0: the generator sees the aligned student [2, 3] everywhere:
    # Σ = 2 images · 4 positions · ((2-1)² + (3-1)²) = 40, / N = 2, · α = 0.5
    assert loss(student, teacher).item() == pytest.approx(0.5 * 40 / 2)
    # λ=1: everything masked, the generator sees zeros: Σ = 16 · 1² = 16, / 2, · 0.5
    loss.mask_ratio = 1.0
    assert loss(student, teacher).item() == pytest.approx(0.5 * 16 / 2)


@pytest.mark.parametrize('mask_type', ['spatial', 'channel'])
def test_mgd_masks_follow_the_seed(mask_type):
    feature = torch.ones(2, 16, 8, 8)
    torch.manual_seed(0)
    first = random_keep_mask(feature, 0.5, mask_type)
    torch.manual_seed(0)
    again = random_keep_mask(feature, 0.5, mask_type)
    torch.manual_seed(1)
    other = random_keep_mask(feature, 0.5, mask_type)
    assert first.shape == ((2, 1, 8, 8) if mask_type == 'spatial' else (2, 16, 1, 1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert set(first.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize('mask_type, unit', [('spatial', 16), ('channel', 32 * 32)])
def test_mgd_masked_fraction_and_shape(mask_type, unit):
    # Student = teacher = 1 and an identity generator: each masked element costs 1, each kept
    # one 0, so N · loss counts the masked elements: whole positions (16 channels each) or
    # whole channels (32·32 positions each), about λ = 0.15 of them.
    loss = MGDLoss(16, 16, loss_weight=1.0, mask_ratio=0.15, mask_type=mask_type)
    set_identity_generator(loss.generation)
    torch.manual_seed(0)
    masked_elements = loss(torch.ones(4, 16, 32, 32), torch.ones(4, 16, 32, 32)).item() * 4
    assert masked_elements == pytest.approx(round(masked_elements))
    units = round(masked_elements) / unit
    assert units == int(units)
    total_units = 4 * 16 * 32 * 32 / unit
    # Each unit is masked with probability λ: the share lies within 4 binomial σ of λ.
    assert abs(units / total_units - 0.15) < 4 * math.sqrt(0.15 * 0.85 / total_units)


def test_mgd_gradient_reaches_student_and_its_layers_not_teacher():
    loss = MGDLoss(4, 8, loss_weight=1.0, mask_ratio=0.5)
    student = torch.randn(2, 4, 5, 5, requires_grad=True)
    teacher = torch.randn(2, 8, 5, 5, requires_grad=True)
    loss(student, teacher).backward()
    assert student.grad.abs().sum() > 0
    for layer in (loss.align, loss.generation[0], loss.generation[2]):
        assert layer.weight.grad.abs().sum() > 0
    assert teacher.grad is None


def test_mgd_errors_name_the_problem():
    loss = MGDLoss(4, 8, loss_weight=1.0, mask_ratio=0.5)
    with pytest.raises(ValueError, match=r'student \(1, 8, 4, 4\) and teacher \(1, 8, 2, 2\)'):
        loss(torch.zeros(1, 4, 4, 4), torch.zeros(1, 8, 2, 2))
    with pytest.raises(ValueError, match=r'N×4×H×W student feature, got \(1, 6, 4, 4\)'):
        loss(torch.zeros(1, 6, 4, 4), torch.zeros(1, 8, 4, 4))
    with pytest.raises(ValueError, match='mask_ratio must be in'):
        MGDLoss(4, 8, loss_weight=1.0, mask_ratio=1.5)
    with pytest.raises(ValueError, match='mask_type must be one of'):
        MGDLoss(4, 8, loss_weight=1.0, mask_ratio=0.5, mask_type='pixel')


# ------------------------------------------------------------------------ device independence
def test_losses_create_no_tensor_off_their_inputs_device():
    """On the meta device, any tensor made on the default device (a ``.cuda()`` or a bare
    ``torch.arange``) would fail to mix with the inputs."""
    meta = torch.device('meta')
    samples = samples_with_labels(0, 1)
    nkd = NKDLoss()(torch.zeros(2, 5, device=meta), torch.zeros(2, 5, device=meta), samples)
    uskd = USKDLoss(4, 5).to(meta)(torch.zeros(2, 5, device=meta),
                                   torch.zeros(2, 4, 3, 3, device=meta), samples)
    mgd = MGDLoss(4, 8, 1.0, 0.5).to(meta)(torch.zeros(2, 4, 3, 3, device=meta),
                                           torch.zeros(2, 8, 3, 3, device=meta))
    tokens = [torch.zeros(2, 17, 4, device=meta)] * 6
    vitkd = ViTKDLoss(4, 4).to(meta)(*tokens)
    tf_nkd = TfNKDLoss()(torch.zeros(2, 5, device=meta), samples)
    for value in (*nkd.values(), *uskd.values(), mgd, *vitkd.values(), tf_nkd):
        assert value.device == meta and value.dim() == 0


# ------------------------------------------------------------------ inside the Distiller
def build_distiller(student, teacher_files, losses, **student_extra):
    """A Distiller on mmpretrain models; ``teacher_files=None`` builds none (self-KD)."""
    teacher = None
    if teacher_files is not None:
        config, checkpoint = teacher_files
        teacher = dict(config=config, checkpoint=checkpoint)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Distiller(student=dict(student, **student_extra), teacher=teacher,
                         distill_losses=losses)


def backward_and_check(distiller, losses, expected_keys):
    """The expected losses are logged, finite and positive; backward leaves the teacher
    without gradients."""
    assert expected_keys <= set(losses)
    assert all(torch.isfinite(losses[k]) and losses[k] > 0 for k in expected_keys)
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    if distiller.teacher is not None:
        assert all(p.grad is None for p in distiller.teacher.parameters())


def test_nkd_in_distiller_with_mixup_labels(teacher_files):
    from mmpretrain.structures import DataSample
    # Mixup as mmpretrain configs (DeiT) declare it: the classifier hands train_cfg.augments
    # to its data preprocessor, which the distiller uses.
    distiller = build_distiller(
        tiny_classifier(4), teacher_files,
        dict(nkd=dict(type='NKDLoss', tau=1.0, gamma=1.5,
                      inputs=dict(student_logits='student.head.fc',
                                  teacher_logits='teacher.head.fc'))),
        train_cfg=dict(augments=[dict(type='Mixup', alpha=1.0)]),
        data_preprocessor=dict(num_classes=5))
    inputs, samples = classification_batch()
    torch.manual_seed(3)
    data = distiller.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    scores = torch.stack([s.gt_score for s in data['data_samples']])
    assert scores.max() < 1  # Mixup mixed the labels into soft scores
    losses = distiller(data['inputs'], data['data_samples'], mode='loss')
    # the same loss with hard labels at the top score, on the models' own logits
    with torch.no_grad():
        student_logits = distiller.student(data['inputs'], mode='tensor')
        teacher_logits = distiller.teacher(data['inputs'], mode='tensor')
    hard = [DataSample().set_gt_label(int(i)) for i in scores.argmax(dim=1)]
    expected = NKDLoss()(student_logits, teacher_logits, hard)
    assert losses['loss_nkd_target'].item() == pytest.approx(expected['target'].item(), rel=1e-5)
    assert losses['loss_nkd_non_target'].item() == pytest.approx(
        expected['non_target'].item(), rel=1e-5)
    backward_and_check(distiller, losses,
                       {'loss_student', 'loss_nkd_target', 'loss_nkd_non_target'})
    assert distiller.student.head.fc.weight.grad.abs().sum() > 0


def test_uskd_in_distiller_without_teacher():
    distiller = build_distiller(
        tiny_classifier(4), None,
        dict(uskd=dict(type='USKDLoss', in_channels=16, num_classes=5, mu=0.1,
                       inputs=dict(student_logits='student.head.fc',
                                   student_feature='student.backbone.layer3'))))
    assert distiller.teacher is None
    losses = distiller(*classification_batch(), mode='loss')
    backward_and_check(distiller, losses,
                       {'loss_student', 'loss_uskd_target', 'loss_uskd_non_target',
                        'loss_uskd_weak'})
    assert distiller.distill_losses['uskd'].fc.weight.grad.abs().sum() > 0
    assert distiller.student.backbone.layer3[0].conv1.weight.grad.abs().sum() > 0


def test_mgd_in_distiller_on_the_last_stage(teacher_files):
    distiller = build_distiller(
        tiny_classifier(4), teacher_files,
        dict(mgd=dict(type='MGDLoss', student_channels=32, teacher_channels=64,
                      loss_weight=7e-5, mask_ratio=0.15, mask_type='channel',
                      inputs=dict(student_feature='student.backbone.layer4',
                                  teacher_feature='teacher.backbone.layer4'))))
    losses = distiller(*classification_batch(), mode='loss')
    backward_and_check(distiller, losses, {'loss_student', 'loss_mgd'})
    assert distiller.student.backbone.layer4[1].conv2.weight.grad.abs().sum() > 0
    mgd = distiller.distill_losses['mgd']
    assert mgd.align.weight.grad.abs().sum() > 0 and mgd.generation[2].weight.grad.abs().sum() > 0


def tiny_vit(embed_dims, backbone='VisionTransformer', head='VisionTransformerClsHead'):
    """A real mmpretrain ViT on 16×16 images, 4×4 patches: 16 patch tokens."""
    arch = dict(embed_dims=embed_dims, num_layers=3, num_heads=2,
                feedforward_channels=2 * embed_dims)
    return dict(type='ImageClassifier',
                backbone=dict(type=backbone, arch=arch, img_size=16, patch_size=4),
                neck=None,
                head=dict(type=head, num_classes=5, in_channels=embed_dims,
                          loss=dict(type='CrossEntropyLoss')))


@pytest.fixture
def deit_teacher_files(tmp_path):
    """A distilled-DeiT teacher (class + distillation token) config and checkpoint."""
    from mmpretrain.registry import MODELS
    model = tiny_vit(16, 'DistilledVisionTransformer', 'DeiTClsHead')
    config = write_config(osp.join(tmp_path, 'deit.py'), default_scope='mmpretrain',
                          model=model)
    torch.manual_seed(0)
    checkpoint = osp.join(tmp_path, 'deit.pth')
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # other tests leave theirs
        teacher = MODELS.build(model)
    torch.save({'state_dict': teacher.state_dict()}, checkpoint)
    return config, checkpoint


def test_vitkd_and_nkd_in_distiller_on_real_vits(deit_teacher_files):
    taps = dict(student_block0='student.backbone.layers.0',
                student_block1='student.backbone.layers.1',
                student_final='student.backbone.ln1',
                teacher_block0='teacher.backbone.layers.0',
                teacher_block1='teacher.backbone.layers.1',
                teacher_final='teacher.backbone.ln1')
    distiller = build_distiller(
        tiny_vit(8), deit_teacher_files,
        dict(vitkd=dict(type='ViTKDLoss', student_dims=8, teacher_dims=16,
                        student_extra_tokens=1, teacher_extra_tokens=2, inputs=taps),
             nkd=dict(type='NKDLoss', gamma=1.0,
                      inputs=dict(student_logits='student.head.layers.head',
                                  teacher_logits='teacher.head.layers.head'))))
    assert distiller.student.backbone.num_extra_tokens == 1
    assert distiller.teacher.backbone.num_extra_tokens == 2
    losses = distiller(*classification_batch(), mode='loss')
    backward_and_check(distiller, losses, {'loss_student', 'loss_vitkd_mimic', 'loss_vitkd_gen',
                                           'loss_nkd_target', 'loss_nkd_non_target'})
    vitkd = distiller.distill_losses['vitkd']
    assert vitkd.mask_token.grad.abs().sum() > 0
    assert distiller.student.backbone.layers[0].ffn.layers[1].weight.grad.abs().sum() > 0


def test_vitkd_generator_sees_tokens_on_their_patch_grid():
    """Tokens go onto the √N×√N grid channel by channel and come back in token order: with an
    identity generator the kept tokens return unchanged and the masked ones as the mask token
    (teacher dims > 1, where a wrong transpose would mix tokens and channels)."""
    loss = ViTKDLoss(student_dims=3, teacher_dims=3, mask_ratio=0.5)
    set_identity_generator(loss.generation)
    with torch.no_grad():
        loss.mask_token.copy_(torch.tensor([0.5, 0.25, 2.0]).view(1, 1, 3))
    tokens = torch.rand(2, 16, 3)  # non-negative: the generator is the identity there (ReLU)
    generated, masked = loss._generate(tokens)
    keep = masked == 0
    assert masked.sum() == 2 * 8  # half of each image's 16 tokens
    torch.testing.assert_close(generated[keep], tokens[keep])
    torch.testing.assert_close(generated[~keep], loss.mask_token.expand(2, 16, 3)[~keep])
