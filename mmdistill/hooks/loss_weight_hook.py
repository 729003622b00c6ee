"""Changing distillation-loss weights over training."""
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdistill.registry import HOOKS

POLICIES = ('constant', 'linear', 'step', 'stop')


def schedule_factor(policy: str, t: int, t_max: int, value: float = 1.0,
                    start: float = 1.0, end: float = 0.0, begin: int = 0,
                    end_at: Optional[int] = None, milestones: Sequence[int] = (),
                    gamma: float = 0.1, at: Optional[int] = None) -> float:
    """The scale s(t) of a distillation loss at step ``t`` (epoch or iteration, 0-based).

    - ``constant``: ``s = value``.
    - ``linear``: ``s = start + (end - start) · clip((t - begin) / (end_at - begin), 0, 1)``,
      ``end_at`` defaulting to ``t_max``; ``start=1, end=0`` by epoch is DWPose's
      ``1 − epoch / max_epochs``.
    - ``step``: ``s = value · gamma^k``, k the number of milestones ``≤ t``.
    - ``stop``: ``s = value`` before ``at``, 0 from ``at`` on (the distiller then skips the loss
      and, if no loss needs it, the teacher).
    """
    if policy == 'constant':
        return value
    if policy == 'linear':
        end_at = t_max if end_at is None else end_at
        if end_at <= begin:
            raise ValueError(f'linear schedule needs end_at > begin, got {begin}..{end_at}')
        progress = min(max((t - begin) / (end_at - begin), 0.0), 1.0)
        return start + (end - start) * progress
    if policy == 'step':
        return value * gamma**sum(1 for m in milestones if t >= m)
    if policy == 'stop':
        if at is None:
            raise ValueError("the 'stop' schedule needs at=<epoch or iteration>")
        return value if t < at else 0.0
    raise ValueError(f"unknown schedule policy '{policy}'; choose one of {POLICIES}")


@HOOKS.register_module()
class DistillLossWeightHook(Hook):
    """Scale distillation losses by a schedule: ``L_k ← s(t) · L_k`` (see
    :func:`schedule_factor`). The current scale is logged as ``<loss name>_scale``.

    Example (DWPose's linear decay of both stage-1 losses)::

        custom_hooks = [dict(type='mmdistill.DistillLossWeightHook', policy='linear',
                             by='epoch', start=1.0, end=0.0, losses=['fea', 'logit'])]

    Args:
        policy: ``constant``, ``linear``, ``step`` or ``stop``.
        by: ``'epoch'`` (scale constant within an epoch) or ``'iter'``.
        losses: names of the distiller's losses to scale; ``None`` for all of them.
        **policy_args: the policy's arguments (``value``, ``start``, ``end``, ``begin``,
            ``end_at``, ``milestones``, ``gamma``, ``at``).
    """

    priority = 'NORMAL'

    def __init__(self, policy: str = 'constant', by: str = 'epoch',
                 losses: Optional[Sequence[str]] = None, **policy_args):
        if by not in ('epoch', 'iter'):
            raise ValueError(f"by must be 'epoch' or 'iter', got '{by}'")
        schedule_factor(policy, 0, 1, **policy_args)  # a wrong policy fails at build time
        self.policy = policy
        self.by = by
        self.losses = list(losses) if losses is not None else None
        self.policy_args = policy_args

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
        scale = schedule_factor(self.policy, t, t_max, **self.policy_args)
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
