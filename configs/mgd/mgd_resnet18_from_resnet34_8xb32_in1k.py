# MGD (Yang et al., ECCV 2022): ResNet-18 <- ResNet-34, last backbone stage (512 ch); the
# reference's classification code masks channels, not positions.
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
        mgd=dict(type='MGDLoss', student_channels=512, teacher_channels=512, loss_weight=7e-5,
                 mask_ratio=0.15, mask_type='channel',
                 inputs=dict(student_feature='student.backbone.layer4',
                             teacher_feature='teacher.backbone.layer4')),
    ))
