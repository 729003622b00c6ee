# DWPose stage 1 on COCO body: RTMPose-m student <- RTMPose-l teacher, 256x192.
_base_ = [
    'mmpose::body_2d_keypoint/rtmpose/coco/rtmpose-m_8xb256-420e_coco-256x192.py',
    '../_base_/dwpose_stage1.py',
]
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpose::body_2d_keypoint/rtmpose/coco/rtmpose-l_8xb256-420e_coco-256x192.py',
        checkpoint='https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/rtmpose-l_simcc-coco_pt-aic-coco_420e-256x192-1352a4d2_20230127.pth'),
    distill_losses=dict(
        fea=dict(_base_.feature_loss, student_channels=768, teacher_channels=1024),
        logit=dict(_base_.logit_loss, beta=_base_.model.head.loss.beta)))
custom_hooks = _base_.custom_hooks + [_base_.linear_decay_hook]
optim_wrapper = dict(clip_grad=dict(max_norm=1.0, norm_type=2))
