"""Changing distillation-loss weights over training."""
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdistill.registry import HOOKS, WEIGHT_SCHEDULES
from .weight_schedules import WeightSchedule


@HOOKS.register_module()
class DistillLossWeightHook(Hook):
    """Scale distillation losses by a schedule: ``L_k ← s(t) · L_k``, ``s`` a weight schedule
    of :data:`~mmdistill.registry.WEIGHT_SCHEDULES` (:mod:`mmdistill.hooks.weight_schedules`:
    ``Constant``, ``Linear``, ``Step``, ``Stop``). The current scale is logged as
    ``<loss name>_scale``.

    Example (DWPose's linear decay of both stage-1 losses)::

        custom_hooks = [dict(type='mmdistill.DistillLossWeightHook', policy='linear',
                             by='epoch', start=1.0, end=0.0, losses=['fea', 'logit'])]

    or, the same, ``schedule=dict(type='Linear', start=1.0, end=0.0)`` instead of ``policy``
    and its arguments.

    Args:
        policy: the schedule's registered name in lower case (``constant``, ``linear``,
            ``step``, ``stop``); ``constant`` if neither it nor ``schedule`` is given.
        by: ``'epoch'`` (scale constant within an epoch) or ``'iter'``.
        losses: names of the distiller's losses to scale; ``None`` for all of them.
        schedule: the schedule's config, ``dict(type=..., **its arguments)``, instead of
            ``policy`` and ``policy_args``.
        **policy_args: the arguments of ``policy``'s schedule, and only those (``value`` of
            ``constant``; ``start``, ``end``, ``begin``, ``end_at`` of ``linear``;
            ``milestones``, ``gamma``, ``value`` of ``step``; ``at``, ``value`` of ``stop``).
    """

    priority = 'NORMAL'

    def __init__(self, policy: Optional[str] = None, by: str = 'epoch',
                 losses: Optional[Sequence[str]] = None, schedule: Optional[dict] = None,
                 **policy_args):
        if by not in ('epoch', 'iter'):
            raise ValueError(f"by must be 'epoch' or 'iter', got '{by}'")
        if schedule is None:
            policy = 'constant' if policy is None else policy
            schedule = dict(type=self.schedule_type(policy), **policy_args)
        elif policy is not None or policy_args:
            raise TypeError('DistillLossWeightHook takes either policy= with its arguments or '
                            f'schedule=dict(type=...), got schedule={schedule}, policy={policy}, '
                            f'{policy_args}')
        self.schedule: WeightSchedule = WEIGHT_SCHEDULES.build(schedule)
        self.by = by
        self.losses = list(losses) if losses is not None else None

    @staticmethod
    def schedule_type(policy: str) -> str:
        """The registered schedule whose name is ``policy`` in lower case."""
        types = {name.lower(): name for name in WEIGHT_SCHEDULES.module_dict}
        if policy not in types:
            raise ValueError(f"unknown schedule policy '{policy}'; choose one of "
                             f'{sorted(types)}')
        return types[policy]

    def before_train(self, runner) -> None:
        distiller = self._distiller(runner)
        names = self.losses if self.losses is not None else list(distiller.loss_scales)
        unknown = [n for n in names if n not in distiller.loss_scales]
        if unknown:
            raise KeyError(f'DistillLossWeightHook names losses {unknown}; the distiller has '
                           f'{list(distiller.loss_scales)}')
        if self.by == 'epoch' and not runner.train_loop.__class__.__name__.startswith('Epoch'):
            raise ValueError("by='epoch' needs an epoch-based train loop; use by='iter'")

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        distiller = self._distiller(runner)
        t, t_max = ((runner.epoch, runner.max_epochs) if self.by == 'epoch' else
                    (runner.iter, runner.max_iters))
        scale = self.schedule(t, t_max)
        names = self.losses if self.losses is not None else list(distiller.loss_scales)
        for name in names:
            distiller.set_loss_scale(name, scale)
            runner.message_hub.update_scalar(f'train/{name}_scale', scale)

    @staticmethod
    def _distiller(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'set_loss_scale'):
            raise TypeError('DistillLossWeightHook needs model type mmdistill.Distiller, got '
                            f'{type(model).__name__}')
        return model
