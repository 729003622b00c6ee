from .loss_weight_hook import DistillLossWeightHook, schedule_factor

__all__ = ['DistillLossWeightHook', 'schedule_factor']
