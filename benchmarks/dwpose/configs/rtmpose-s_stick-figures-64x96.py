# The teacher: RTMPose-s on the stick figures. mmpose's rtmpose-s COCO recipe differs from the
# rtmpose-t one only in the backbone's depth and width, the head's input channels and the EMA
# hook, which is what changes here; everything else is the student's set-up, except that the
# teacher trains twice as long: a teacher no better than its student has nothing to teach.
_base_ = './rtmpose-t_stick-figures-64x96.py'

max_epochs = 16
model = dict(
    backbone=dict(deepen_factor=0.33, widen_factor=0.5),
    head=dict(in_channels=512))
custom_hooks = _base_.custom_hooks + [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
