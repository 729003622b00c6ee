"""The distillation-loss weight schedules, value by value, and the wrong ones refused when
they are built, with the argument named."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmdistill.hooks import DistillLossWeightHook
from mmdistill.registry import HOOKS, WEIGHT_SCHEDULES

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def values(cfg, ts, t_max):
    schedule = WEIGHT_SCHEDULES.build(cfg)
    return [schedule(t, t_max) for t in ts]


def test_linear_decay_is_dwpose_rule():
    # DWPose: r = 1 - epoch / max_epochs, 0-based epoch.
    dwpose = [1 - epoch / 10 for epoch in range(10)]
    assert values(dict(type='Linear'), range(10), 10) == pytest.approx(dwpose)
    # The hook of the shipped DWPose stage-1 configs builds that schedule.
    hook_cfg = Config.fromfile(osp.join(ROOT, 'configs', 'dwpose', '_base_',
                                        'dwpose_stage1.py')).linear_decay_hook
    hook = HOOKS.build(hook_cfg)
    assert hook.by == 'epoch'
    assert [hook.schedule(epoch, 10) for epoch in range(10)] == pytest.approx(dwpose)


def test_linear_with_window_and_clipping():
    cfg = dict(type='Linear', start=0.0, end=2.0, begin=2, end_at=6)
    assert values(cfg, (0, 2, 4, 6, 9), 100) == pytest.approx([0.0, 0.0, 1.0, 2.0, 2.0])


def test_step_constant_and_stop():
    assert values(dict(type='Step', milestones=[8, 11], gamma=0.1), (0, 7, 8, 10, 11), 12) == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert values(dict(type='Step', milestones=[2], gamma=0.5, value=4.0), (1, 2), 3) == [4, 2]
    assert values(dict(type='Constant', value=0.3), (5, ), 10) == [0.3]
    assert values(dict(type='Stop', at=3), (0, 2, 3, 9), 10) == [1, 1, 0, 0]
    assert values(dict(type='Stop', at=3, value=0.5), (2, 3), 10) == [0.5, 0]


def test_hook_policy_and_schedule_give_the_same_scales():
    by_policy = DistillLossWeightHook(policy='step', milestones=[8, 11], gamma=0.1)
    by_schedule = DistillLossWeightHook(schedule=dict(type='Step', milestones=[8, 11]))
    ts = (0, 7, 8, 10, 11)
    expected = pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert [by_policy.schedule(t, 12) for t in ts] == expected
    assert [by_schedule.schedule(t, 12) for t in ts] == expected
    # No policy, no schedule: every loss keeps its weight.
    assert [DistillLossWeightHook().schedule(t, 12) for t in (0, 11)] == [1.0, 1.0]


@pytest.mark.parametrize('hook, error, message', [
    (dict(policy='constant', milestones=[3]), TypeError,
     r"'Constant' weight schedule does not take \['milestones'\]; it accepts \['value'\]"),
    (dict(policy='step', milestones=[3], at=5), TypeError,
     r"'Step' weight schedule does not take \['at'\]; it accepts "
     r"\['milestones', 'gamma', 'value'\]"),
    (dict(policy='linear', milestone=3), TypeError,
     r"'Linear' weight schedule does not take \['milestone'\]; it accepts "
     r"\['start', 'end', 'begin', 'end_at'\]"),
    (dict(policy='stop'), TypeError,
     r"'Stop' weight schedule needs \['at'\]; it accepts \['at', 'value'\]"),
    (dict(policy='step'), TypeError, r"'Step' weight schedule needs \['milestones'\]"),
    (dict(schedule=dict(type='Stop')), TypeError, r"'Stop' weight schedule needs \['at'\]"),
    (dict(policy='linear', begin=5, end_at=5), ValueError,
     r"'Linear' weight schedule needs end_at > begin, got begin=5, end_at=5"),
    (dict(policy='linear', begin=5, end_at=2), ValueError,
     r'needs end_at > begin, got begin=5, end_at=2'),
    (dict(policy='cosine'), ValueError,
     r"unknown schedule policy 'cosine'; choose one of \['constant', 'linear', 'step', "
     r"'stop'\]"),
    (dict(schedule=dict(type='Cosine')), KeyError,
     r"unknown weight schedule 'Cosine'; registered: \['Constant', 'Linear', 'Step', "
     r"'Stop'\]"),
    (dict(policy='constant', value=-0.5), ValueError,
     r"'Constant' weight schedule needs value to be a finite number >= 0, got -0.5"),
    (dict(policy='linear', start=float('nan')), ValueError,
     r"'Linear' weight schedule needs start to be a finite number >= 0, got nan"),
    (dict(policy='linear', end='0'), ValueError,
     r"needs end to be a finite number >= 0, got '0'"),
    (dict(policy='step', milestones=[8], gamma=float('inf')), ValueError,
     r"'Step' weight schedule needs gamma to be a finite number >= 0, got inf"),
    (dict(policy='step', milestones=[]), ValueError,
     r"'Step' weight schedule needs milestones, a non-empty list of steps, got \[\]"),
    (dict(policy='step', milestones=8), ValueError, r'needs milestones, .*, got 8'),
    (dict(policy='step', milestones=[8, -1]), ValueError,
     r"'Step' weight schedule needs each milestone to be an integer .* >= 0, got -1"),
    (dict(policy='stop', at=2.5), ValueError,
     r"'Stop' weight schedule needs at to be an integer .* >= 0, got 2.5"),
    (dict(policy='stop', at=-1), ValueError, r'needs at to be an integer .* >= 0, got -1'),
    (dict(policy='linear', begin=-1), ValueError, r'needs begin to be an integer'),
    (dict(policy='linear', schedule=dict(type='Linear')), TypeError,
     r'takes either policy= with its arguments or schedule=dict\(type=...\)'),
    (dict(start=0.5, schedule=dict(type='Linear')), TypeError, r'takes either policy='),
    (dict(by='step'), ValueError, r"by must be 'epoch' or 'iter', got 'step'"),
])
def test_bad_schedules_fail_at_build_time(hook, error, message):
    with pytest.raises(error, match=message):
        DistillLossWeightHook(**hook)


def test_linear_up_to_t_max_needs_t_max_after_begin():
    schedule = WEIGHT_SCHEDULES.build(dict(type='Linear', begin=4))
    assert schedule(6, 8) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='needs end_at > begin, got begin=4, end_at=4'):
        schedule(0, 4)
