# DWPose stage 1 on COCO-WholeBody + UBody: RTMPose-s student <- RTMPose-l teacher, 256x192.
_base_ = [
    'mmpose::wholebody_2d_keypoint/rtmpose/ubody/rtmpose-s_8xb64-270e_coco-ubody-wholebody-256x192.py',
    '../_base_/dwpose_stage1.py',
]
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpose::wholebody_2d_keypoint/rtmpose/ubody/rtmpose-l_8xb64-270e_coco-ubody-wholebody-256x192.py',
        checkpoint='https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/rtmpose-l_ucoco_256x192-95bb32f5_20230822.pth'),
    distill_losses=dict(
        fea=dict(_base_.feature_loss, student_channels=512, teacher_channels=1024),
        logit=dict(_base_.logit_loss, beta=_base_.model.head.loss.beta)))
custom_hooks = _base_.custom_hooks + [_base_.linear_decay_hook]
optim_wrapper = dict(clip_grad=dict(max_norm=1.0, norm_type=2))
