# DWPose stage 2 on COCO-WholeBody: RTMPose-m, 256x192, head-aware self-distillation from the
# stage-1 student (s1_dwpose_l-to-m_coco-wholebody-256x192.py), exported first:
#   python tools/export_student.py configs/dwpose/coco-wholebody/s1_dwpose_l-to-m_coco-wholebody-256x192.py <stage-1 checkpoint> <dir>
# then train this config with --cfg-options model.teacher.checkpoint=<dir>/student.pth
_base_ = [
    'mmpose::wholebody_2d_keypoint/rtmpose/coco-wholebody/rtmpose-m_8xb64-270e_coco-wholebody-256x192.py',
    '../_base_/dwpose_stage2.py',
]
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpose::wholebody_2d_keypoint/rtmpose/coco-wholebody/rtmpose-m_8xb64-270e_coco-wholebody-256x192.py',
        checkpoint='work_dirs/s1_dwpose_l-to-m_coco-wholebody-256x192/export/student.pth'),
    shared_modules=['backbone'],
    student_loss_weight=0.0,
    distill_losses=dict(logit=dict(_base_.logit_loss, beta=_base_.model.head.loss.beta)))
train_cfg = dict(max_epochs=60, val_interval=10)
optim_wrapper = dict(clip_grad=dict(max_norm=1.0, norm_type=2))
