# Hinton KD on the SimCC logits: RTMPose-s student <- RTMPose-m teacher (mmpose, COCO body).
# The SimCC head's own loss is softmax(beta * logits) with beta = 10, i.e. tau = 1 / beta;
# loss_weight = 0.1 / tau^2 gives DWPose's logit-loss weight of 0.1 per axis.
_base_ = 'mmpose::body_2d_keypoint/rtmpose/coco/rtmpose-s_8xb256-420e_coco-256x192.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

simcc_kd = dict(type='HintonKDLoss', tau=0.1, loss_weight=10.0, class_dim=-1)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpose::body_2d_keypoint/rtmpose/coco/rtmpose-m_8xb256-420e_coco-256x192.py',
        checkpoint='https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/'
        'rtmpose-m_simcc-coco_pt-aic-coco_420e-256x192-d8dd5ca4_20230127.pth'),
    distill_losses=dict(
        kd_x=dict(simcc_kd, inputs=dict(student_logits='student.head.cls_x',
                                        teacher_logits='teacher.head.cls_x')),
        kd_y=dict(simcc_kd, inputs=dict(student_logits='student.head.cls_y',
                                        teacher_logits='teacher.head.cls_y'))))
