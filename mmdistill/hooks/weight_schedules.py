"""Loss-weight schedules: the scale ``s(t)`` of a distillation loss at step ``t`` (an epoch or
an iteration, 0-based) of ``t_max``.

Each policy is a class of :data:`~mmdistill.registry.WEIGHT_SCHEDULES` that takes exactly its
own arguments and checks them when it is built::

    schedule = WEIGHT_SCHEDULES.build(dict(type='Linear', start=1.0, end=0.0))
    schedule(t=3, t_max=10)  # 0.7
"""
import math
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real
from typing import Optional, Sequence

from mmdistill.registry import WEIGHT_SCHEDULES


def check_scale(schedule: str, name: str, value: Real) -> None:
    """Refuse a scale that is not a finite number ≥ 0 (a negative weight would maximise its
    loss)."""
    if not (isinstance(value, Real) and math.isfinite(value) and value >= 0):
        raise ValueError(f"the '{schedule}' weight schedule needs {name} to be a finite number "
                         f'>= 0, got {value!r}')


def check_step(schedule: str, name: str, value: Integral) -> None:
    """Refuse a step (epoch or iteration) that is not an integer ≥ 0."""
    if not (isinstance(value, Integral) and value >= 0):
        raise ValueError(f"the '{schedule}' weight schedule needs {name} to be an integer "
                         f'(epoch or iteration) >= 0, got {value!r}')


class WeightSchedule(metaclass=ABCMeta):
    """A loss-weight schedule: ``schedule(t, t_max)`` is the scale at step ``t`` of ``t_max``."""

    @abstractmethod
    def __call__(self, t: int, t_max: int) -> float:
        """The scale ``s(t)`` at step ``t`` (0-based) of ``t_max``."""


@WEIGHT_SCHEDULES.register_module()
class Constant(WeightSchedule):
    """``s(t) = value``.

    Args:
        value: the scale, ≥ 0.
    """

    def __init__(self, value: float = 1.0):
        check_scale('Constant', 'value', value)
        self.value = value

    def __call__(self, t: int, t_max: int) -> float:
        return self.value


@WEIGHT_SCHEDULES.register_module()
class Linear(WeightSchedule):
    """``s(t) = start + (end − start) · clip((t − begin) / (end_at − begin), 0, 1)``.

    ``end_at`` defaults to ``t_max``; ``start=1, end=0`` (the defaults) by epoch is DWPose's
    ``1 − epoch / max_epochs``.

    Args:
        start: the scale up to ``begin``, ≥ 0.
        end: the scale from ``end_at`` on, ≥ 0.
        begin: the step the change begins at.
        end_at: the step it ends at, > ``begin``; ``None`` for ``t_max`` (which must then be
            > ``begin``).
    """

    def __init__(self, start: float = 1.0, end: float = 0.0, begin: int = 0,
                 end_at: Optional[int] = None):
        check_scale('Linear', 'start', start)
        check_scale('Linear', 'end', end)
        check_step('Linear', 'begin', begin)
        if end_at is not None:
            check_step('Linear', 'end_at', end_at)
            self.check_window(begin, end_at)
        self.start = start
        self.end = end
        self.begin = begin
        self.end_at = end_at

    @staticmethod
    def check_window(begin: int, end_at: int) -> None:
        """Refuse an empty or reversed window ``begin..end_at``."""
        if end_at <= begin:
            raise ValueError("the 'Linear' weight schedule needs end_at > begin, got "
                             f'begin={begin}, end_at={end_at}')

    def __call__(self, t: int, t_max: int) -> float:
        end_at = t_max if self.end_at is None else self.end_at
        self.check_window(self.begin, end_at)
        progress = min(max((t - self.begin) / (end_at - self.begin), 0.0), 1.0)
        return self.start + (self.end - self.start) * progress


@WEIGHT_SCHEDULES.register_module()
class Step(WeightSchedule):
    """``s(t) = value · gamma^k``, k the number of milestones ``≤ t``.

    Args:
        milestones: the steps the scale is multiplied by ``gamma`` at (at least one).
        gamma: the factor, ≥ 0.
        value: the scale before the first milestone, ≥ 0.
    """

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1, value: float = 1.0):
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence) \
                or not milestones:
            raise ValueError("the 'Step' weight schedule needs milestones, a non-empty list of "
                             f'steps, got {milestones!r}')
        for milestone in milestones:
            check_step('Step', 'each milestone', milestone)
        check_scale('Step', 'gamma', gamma)
        check_scale('Step', 'value', value)
        self.milestones = list(milestones)
        self.gamma = gamma
        self.value = value

    def __call__(self, t: int, t_max: int) -> float:
        return self.value * self.gamma**sum(1 for m in self.milestones if t >= m)


@WEIGHT_SCHEDULES.register_module()
class Stop(WeightSchedule):
    """``s(t) = value`` for ``t < at``, 0 from ``at`` on (the distiller then skips the loss and,
    if no loss needs it, the teacher).

    Args:
        at: the step the loss stops at.
        value: the scale before ``at``, ≥ 0.
    """

    def __init__(self, at: int, value: float = 1.0):
        check_step('Stop', 'at', at)
        check_scale('Stop', 'value', value)
        self.at = at
        self.value = value

    def __call__(self, t: int, t_max: int) -> float:
        return self.value if t < self.at else 0.0
