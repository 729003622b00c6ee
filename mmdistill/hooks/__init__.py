from .loss_weight_hook import DistillLossWeightHook
from .weight_schedules import Constant, Linear, Step, Stop, WeightSchedule

__all__ = ['DistillLossWeightHook', 'WeightSchedule', 'Constant', 'Linear', 'Step', 'Stop']
