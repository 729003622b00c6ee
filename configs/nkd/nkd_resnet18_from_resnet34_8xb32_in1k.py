# NKD (Yang et al., ICCV 2023): ResNet-18 <- ResNet-34.
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
    distill_losses=dict(
        nkd=dict(type='NKDLoss', tau=1.0, gamma=1.5,
                 inputs=dict(student_logits='student.head.fc',
                             teacher_logits='teacher.head.fc')),
    ))
