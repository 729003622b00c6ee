"""Loss values against numbers worked out by hand, gradients, and shape errors."""
import math

import pytest
import torch

from mmdistill.losses import FeatureMSELoss, HintonKDLoss, NKDLoss, SimCCDistillLoss, ViTKDLoss
from mmdistill.losses.functional import dim_names, shape_differences, softmax_kl_divergence


def kl_3_1_vs_uniform():
    # KL([3/4, 1/4] || [1/2, 1/2]) = 3/4·ln(3/2) + 1/4·ln(1/2)
    return 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def test_softmax_kl_divergence_by_hand():
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # softmax = [3/4, 1/4]
    assert softmax_kl_divergence(student, teacher).item() == pytest.approx(kl_3_1_vs_uniform())
    assert softmax_kl_divergence(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_hinton_kd_temperature_and_weight_by_hand():
    # With τ=2, teacher logits [2·ln3, 0] soften to [3/4, 1/4]; the student's are uniform.
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]] * 2)
    loss = HintonKDLoss(tau=2.0, loss_weight=0.5)(student, teacher)
    assert loss.item() == pytest.approx(0.5 * 4 * kl_3_1_vs_uniform())


def test_hinton_kd_batch_mean_and_dense_logits():
    # Two samples, one matching the teacher (KL 0), one not: the batch mean halves the KL.
    teacher = torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    student = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    assert HintonKDLoss()(student, teacher).item() == pytest.approx(kl_3_1_vs_uniform() / 2)
    # N×C×H×W: the class dimension is 1, every pixel is a sample.
    dense_t = teacher.t().reshape(1, 2, 1, 2)
    dense_s = student.t().reshape(1, 2, 1, 2)
    assert HintonKDLoss()(dense_s, dense_t).item() == pytest.approx(kl_3_1_vs_uniform() / 2)


def test_hinton_kd_gradient_reaches_student_only():
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    HintonKDLoss(tau=3.0)(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_hinton_kd_errors():
    with pytest.raises(ValueError, match='student \\(2, 5\\) and teacher \\(2, 6\\)'):
        HintonKDLoss()(torch.zeros(2, 5), torch.zeros(2, 6))
    with pytest.raises(ValueError, match='tau must be positive'):
        HintonKDLoss(tau=0)


def test_shape_differences_name_each_quantity_that_differs():
    names = dim_names(4, {1: 'classes'})
    assert names == ['batch', 'classes', 'spatial size', 'spatial size']
    assert dim_names(3, {-1: 'classes'}, 'positions') == ['batch', 'positions', 'classes']
    assert shape_differences((2, 19, 8, 8), (2, 19, 4, 8), names) == {
        'spatial size': ('8×8', '4×8')}
    assert shape_differences((2, 5, 8, 8), (1, 7, 8, 8), names) == {
        'batch': ('2', '1'), 'classes': ('5', '7')}
    assert shape_differences((2, 5), (2, 5, 1), ['batch', 'classes']) == {
        'number of dimensions': ('2', '3')}


def test_shape_errors_say_what_differs_and_only_its_advice():
    with pytest.raises(ValueError) as error:  # a teacher at its own input size
        HintonKDLoss()(torch.zeros(2, 19, 8, 8), torch.zeros(2, 19, 4, 4))
    assert str(error.value).startswith(
        'HintonKDLoss logits: student (2, 19, 8, 8) and teacher (2, 19, 4, 4) differ in '
        'spatial size (8×8 vs 4×4). Logits are compared position by position')
    assert "inputs='own'" in str(error.value) and 'classes' not in str(error.value)
    with pytest.raises(ValueError, match=r'differ in classes \(5 vs 7\)\. Student and teacher '
                                         'must predict the same classes') as error:
        NKDLoss()(torch.zeros(2, 5), torch.zeros(2, 7), [])
    assert 'spatial' not in str(error.value)
    with pytest.raises(ValueError, match=r'x logits: .* differ in keypoints \(17 vs 133\)\. '
                                         r'Student and teacher heads need the same keypoints'):
        SimCCDistillLoss()(*[torch.zeros(1, 17, 8)] * 2, torch.zeros(1, 133, 8),
                           torch.zeros(1, 17, 8))
    with pytest.raises(ValueError, match=r'differ in channels \(8 vs 6\) and spatial size '
                                         r"\(2×2 vs 4×4\)\. Set teacher_channels to the "
                                         r"teacher feature's channels\. Tap modules with the "
                                         r'same spatial size \(stride\)'):
        FeatureMSELoss(4, 8)(torch.zeros(1, 4, 2, 2), torch.zeros(1, 6, 4, 4))
    good = torch.zeros(2, 17, 4)
    with pytest.raises(ValueError, match=r'block 0 tokens \(after align\): student \(2, 16, 4\) '
                                         r'and teacher \(2, 64, 4\) differ in tokens \(16 vs '
                                         r'64\)\. Student and teacher must have as many patch '
                                         'tokens'):
        ViTKDLoss(4, 4)(good, good, good, torch.zeros(2, 65, 4), good, good)


def test_feature_mse_identity_by_hand():
    student, teacher = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    # 8 squared errors of 1, summed, divided by N=2, times w=0.5
    assert FeatureMSELoss(1, 1, loss_weight=0.5)(student, teacher).item() == pytest.approx(2.0)
    assert FeatureMSELoss(1, 1, reduction='mean')(student, teacher).item() == pytest.approx(1.0)


def test_feature_mse_conv_align_by_hand():
    loss = FeatureMSELoss(student_channels=1, teacher_channels=2)
    with torch.no_grad():
        loss.align.weight.copy_(torch.tensor([2.0, 3.0]).view(2, 1, 1, 1))
        loss.align.bias.zero_()
    # aligned = [2, 3] at each of 4 positions, 2 images: Σ = 2·4·(4 + 9) = 104, / N = 52
    value = loss(torch.ones(2, 1, 2, 2), torch.zeros(2, 2, 2, 2))
    assert value.item() == pytest.approx(52.0)


def test_feature_mse_linear_align_tokens():
    loss = FeatureMSELoss(student_channels=3, teacher_channels=2, align='linear')
    with torch.no_grad():
        loss.align.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
        loss.align.bias.zero_()
    tokens = torch.ones(1, 4, 3)  # aligned tokens are [1, 2]: Σ over 4 tokens of 1 + 4 = 20
    assert loss(tokens, torch.zeros(1, 4, 2)).item() == pytest.approx(20.0)


def test_feature_mse_gradient_reaches_student_and_align_not_teacher():
    loss = FeatureMSELoss(4, 8)
    student = torch.randn(2, 4, 3, 3, requires_grad=True)
    teacher = torch.randn(2, 8, 3, 3, requires_grad=True)
    loss(student, teacher).backward()
    assert student.grad.abs().sum() > 0
    assert loss.align.weight.grad.abs().sum() > 0
    assert teacher.grad is None


def test_feature_mse_errors_name_the_problem():
    with pytest.raises(ValueError, match='expects 4 student channels.*has 5'):
        FeatureMSELoss(4, 8)(torch.zeros(1, 5, 2, 2), torch.zeros(1, 8, 2, 2))
    with pytest.raises(ValueError, match='student \\(1, 8, 2, 2\\) and teacher \\(1, 8, 4, 4\\)'):
        FeatureMSELoss(4, 8)(torch.zeros(1, 4, 2, 2), torch.zeros(1, 8, 4, 4))
    with pytest.raises(ValueError, match='reduction must be one of'):
        FeatureMSELoss(4, 8, reduction='sum')
    with pytest.raises(ValueError, match='align kind must be one of'):
        FeatureMSELoss(4, 8, align='mlp')


def test_hinton_kd_class_dim_last_for_simcc_logits():
    # N×K×bins: KL over the bins, mean over the N·K rows.
    teacher = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]])
    student = torch.zeros(1, 2, 2)
    loss = HintonKDLoss(class_dim=-1)(student, teacher)
    assert loss.item() == pytest.approx(kl_3_1_vs_uniform() / 2)


def test_hinton_kd_spatial_is_channel_wise_distillation_by_hand():
    # One image, two channels on a 1×2 map. Channel 0: the teacher spreads (3/4, 1/4) over the
    # two positions, the student (1/2, 1/2); channel 1 matches. Mean over N·C = 2 channels.
    teacher = torch.tensor([[[[math.log(3.0), 0.0]], [[0.5, 0.2]]]])
    student = torch.tensor([[[[0.0, 0.0]], [[0.5, 0.2]]]])
    loss = HintonKDLoss(tau=1.0, loss_weight=3.0, spatial=True)(student, teacher)
    assert loss.item() == pytest.approx(3.0 * kl_3_1_vs_uniform() / 2)
    # The default softmax over channels at each position gives another value.
    assert HintonKDLoss(tau=1.0, loss_weight=3.0)(student, teacher).item() != pytest.approx(
        loss.item())
    with pytest.raises(ValueError, match='needs N×C×H×W logits'):
        HintonKDLoss(spatial=True)(torch.zeros(2, 3), torch.zeros(2, 3))


def test_hinton_kd_spatial_divides_by_the_temperature():
    # τ = 2 on the same channel-0 case, logits doubled: softmax(2·z/2) is again (3/4, 1/4) vs
    # (1/2, 1/2), so the loss is τ² = 4 times the τ = 1 value (a loss that skipped τ in the
    # softmax would see (9/10, 1/10) instead).
    teacher = torch.tensor([[[[2 * math.log(3.0), 0.0]], [[0.5, 0.2]]]])
    student = torch.tensor([[[[0.0, 0.0]], [[0.5, 0.2]]]])
    loss = HintonKDLoss(tau=2.0, loss_weight=3.0, spatial=True)(student, teacher)
    assert loss.item() == pytest.approx(4 * 3.0 * kl_3_1_vs_uniform() / 2)
