from .loss_weight_hook import DistillLossWeightHook, schedule_factor
from .weight_schedules import Constant, Linear, Step, Stop, WeightSchedule

__all__ = [
    'DistillLossWeightHook', 'schedule_factor', 'WeightSchedule', 'Constant', 'Linear', 'Step',
    'Stop'
]
