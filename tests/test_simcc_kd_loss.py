"""DWPose's SimCC logit loss against values worked out by hand."""
import math

import pytest
import torch

from mmdistill.losses import SimCCDistillLoss


def pose_samples(keypoint_weights):
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample
    samples = []
    for weights in keypoint_weights:
        sample = PoseDataSample()
        sample.gt_instance_labels = InstanceData(keypoint_weights=torch.tensor([weights]))
        samples.append(sample)
    return samples


# With beta = 10, teacher logits (0, 0.1 ln 3) give softmax(beta z) = (1/4, 3/4); the student's
# (0, 0) give (1/2, 1/2). KL(teacher || student) = 1/4 ln(1/2) + 3/4 ln(3/2).
KL_ONE = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)


def logits(*rows):
    return torch.tensor([[list(r)] for r in rows])  # N×K(=1)×bins


def test_value_sums_the_axes_and_averages_over_keypoints():
    teacher_x = logits((0.0, 0.1 * math.log(3)))
    student_x = logits((0.0, 0.0))
    same_y = logits((0.3, -0.2))
    loss = SimCCDistillLoss(beta=10.0, loss_weight=0.1)
    # x contributes KL_ONE, y (identical logits) nothing; N·K = 1.
    assert loss(student_x, same_y, teacher_x, same_y).item() == pytest.approx(0.1 * KL_ONE)
    # Both axes: the two KLs add up.
    assert loss(student_x, student_x, teacher_x, teacher_x).item() == pytest.approx(
        0.2 * KL_ONE)


def test_every_keypoint_counts_unless_visibility_is_asked_for():
    # Two samples: the first as above, the second with a different (bigger) KL.
    teacher_x = logits((0.0, 0.1 * math.log(3)), (0.0, 0.1 * math.log(7)))
    student_x = logits((0.0, 0.0), (0.0, 0.0))
    zeros = torch.zeros(2, 1, 2)
    kl_two = 0.125 * math.log(0.25) + 0.875 * math.log(1.75)  # softmax (1/8, 7/8) vs (1/2, 1/2)
    all_points = SimCCDistillLoss(beta=10.0)(student_x, zeros, teacher_x, zeros,
                                             pose_samples([[1.0], [0.0]]))
    assert all_points.item() == pytest.approx((KL_ONE + kl_two) / 2)
    visible = SimCCDistillLoss(beta=10.0, use_visibility=True)(
        student_x, zeros, teacher_x, zeros, pose_samples([[1.0], [0.0]]))
    assert visible.item() == pytest.approx(KL_ONE / 2)  # the N·K normaliser stays


def test_gradient_reaches_only_the_student():
    torch.manual_seed(0)
    student_x, student_y = torch.randn(2, 3, 8, requires_grad=True), torch.randn(
        2, 3, 6, requires_grad=True)
    teacher_x, teacher_y = torch.randn(2, 3, 8, requires_grad=True), torch.randn(
        2, 3, 6, requires_grad=True)
    SimCCDistillLoss()(student_x, student_y, teacher_x, teacher_y).backward()
    assert student_x.grad.abs().sum() > 0 and student_y.grad.abs().sum() > 0
    assert teacher_x.grad is None and teacher_y.grad is None


def test_mismatched_bins_and_missing_samples_are_clear_errors():
    with pytest.raises(ValueError, match='x logits: student \\(2, 3, 8\\) and teacher '
                                         '\\(2, 3, 16\\) differ.*simcc_split_ratio'):
        SimCCDistillLoss()(torch.zeros(2, 3, 8), torch.zeros(2, 3, 6), torch.zeros(2, 3, 16),
                           torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match='needs the data samples'):
        SimCCDistillLoss(use_visibility=True)(*[torch.zeros(1, 1, 2)] * 4)
    with pytest.raises(ValueError, match='beta must be positive'):
        SimCCDistillLoss(beta=0)
