"""The distillation-loss weight schedules, value by value."""
import pytest

from mmdistill.hooks import DistillLossWeightHook, schedule_factor


def test_linear_decay_is_dwpose_rule():
    # DWPose: r = 1 - epoch / max_epochs, 0-based epoch.
    for epoch in range(10):
        assert schedule_factor('linear', epoch, 10) == pytest.approx(1 - epoch / 10)


def test_linear_with_window_and_clipping():
    kwargs = dict(start=0.0, end=2.0, begin=2, end_at=6)
    assert [schedule_factor('linear', t, 100, **kwargs) for t in (0, 2, 4, 6, 9)] == \
        pytest.approx([0.0, 0.0, 1.0, 2.0, 2.0])


def test_step_constant_and_stop():
    assert [schedule_factor('step', t, 12, milestones=[8, 11], gamma=0.1)
            for t in (0, 7, 8, 10, 11)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert schedule_factor('constant', 5, 10, value=0.3) == 0.3
    assert [schedule_factor('stop', t, 10, at=3) for t in (0, 2, 3, 9)] == [1, 1, 0, 0]


def test_bad_schedules_fail_at_build_time():
    with pytest.raises(ValueError, match="unknown schedule policy 'cosine'"):
        DistillLossWeightHook(policy='cosine')
    with pytest.raises(ValueError, match='needs at='):
        DistillLossWeightHook(policy='stop')
    with pytest.raises(ValueError, match="by must be 'epoch' or 'iter'"):
        DistillLossWeightHook(by='step')
    with pytest.raises(TypeError):
        DistillLossWeightHook(policy='linear', milestone=3)
