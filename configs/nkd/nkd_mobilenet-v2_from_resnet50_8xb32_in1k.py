# NKD (Yang et al., ICCV 2023): MobileNetV2 <- ResNet-50 (mmpretrain ships no MobileNetV1: the
# paper's MobileNetV1 pair).
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpretrain::resnet/resnet50_8xb32_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth'),
    distill_losses=dict(
        nkd=dict(type='NKDLoss', tau=1.0, gamma=1.5,
                 inputs=dict(student_logits='student.head.fc',
                             teacher_logits='teacher.head.fc')),
    ))
