# DWPose stage 2 on the stick figures: a fresh RTMPose-t head learns from the exported stage-1
# student's logits on its shared, frozen backbone, no ground-truth loss, 20% of stage 1's
# epochs; written as the repository's configs/dwpose/coco/s2_*.py are.
_base_ = [
    './rtmpose-t_stick-figures-64x96.py',
    '../../../configs/dwpose/_base_/dwpose_stage2.py',
]

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/rtmpose-t_stick-figures-64x96.py',
        # benchmarks/dwpose/run.py exports each stage-1 student and passes it here.
        checkpoint='work_dirs/dwpose_stick_figures/s1_seed0/export/student.pth'),
    shared_modules=['backbone'],
    student_loss_weight=0.0,
    distill_losses=dict(logit=dict(_base_.logit_loss, beta=_base_.model.head.loss.beta)))
train_cfg = dict(max_epochs=2, val_interval=2)  # about 20% of stage 1's 8
default_hooks = dict(checkpoint=dict(interval=2))
optim_wrapper = dict(clip_grad=dict(max_norm=1.0, norm_type=2))
