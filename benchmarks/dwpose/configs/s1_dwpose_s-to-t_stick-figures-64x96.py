# DWPose stage 1 on the stick figures: RTMPose-t student <- RTMPose-s teacher, written as the
# repository's configs/dwpose/coco/s1_*.py are (student config + the stage-1 parts).
_base_ = [
    './rtmpose-t_stick-figures-64x96.py',
    '../../../configs/dwpose/_base_/dwpose_stage1.py',
]

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/rtmpose-s_stick-figures-64x96.py',
        # benchmarks/dwpose/run.py trains the teacher first and passes its checkpoint here.
        checkpoint='work_dirs/dwpose_stick_figures/teacher/epoch_16.pth'),
    distill_losses=dict(
        fea=dict(_base_.feature_loss, student_channels=384, teacher_channels=512),
        logit=dict(_base_.logit_loss, beta=_base_.model.head.loss.beta)))
custom_hooks = _base_.custom_hooks + [_base_.linear_decay_hook]
optim_wrapper = dict(clip_grad=dict(max_norm=1.0, norm_type=2))
