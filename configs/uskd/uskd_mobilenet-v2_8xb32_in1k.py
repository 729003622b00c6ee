# USKD, teacher-free (Yang et al., ICCV 2023): MobileNetV2, the 320-channel stage; no teacher is
# built.
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=None,
    distill_losses=dict(
        uskd=dict(type='USKDLoss', in_channels=320, num_classes=1000, alpha=1.0, beta=0.1,
                  mu=0.005,
                  inputs=dict(student_logits='student.head.fc',
                              student_feature='student.backbone.layer7')),
    ))
