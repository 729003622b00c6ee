# DWPose stage 1 on COCO-WholeBody: RTMPose-l student <- RTMPose-x teacher, 384x288.
_base_ = [
    'mmpose::wholebody_2d_keypoint/rtmpose/coco-wholebody/rtmpose-l_8xb32-270e_coco-wholebody-384x288.py',
    '../_base_/dwpose_stage1.py',
]
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpose::wholebody_2d_keypoint/rtmpose/coco-wholebody/rtmpose-x_8xb32-270e_coco-wholebody-384x288.py',
        checkpoint='https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/rtmpose-x_simcc-coco-wholebody_pt-body7_270e-384x288-401dfc90_20230629.pth'),
    distill_losses=dict(
        fea=dict(_base_.feature_loss, student_channels=1024, teacher_channels=1280),
        logit=dict(_base_.logit_loss, beta=_base_.model.head.loss.beta)))
custom_hooks = _base_.custom_hooks + [_base_.linear_decay_hook]
optim_wrapper = dict(clip_grad=dict(max_norm=1.0, norm_type=2))
