# MGD on the last backbone stage (32 student channels aligned to the teacher's 128), with the
# reference's classification settings (alpha=7e-5, lambda=0.15, a channel mask).
_base_ = ['./student_resnet18_w4.py']
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/teacher_resnet18.py',
        checkpoint='work_dirs/digits/teacher/epoch_30.pth'),
    distill_losses=dict(
        mgd=dict(type='MGDLoss', student_channels=32, teacher_channels=128, loss_weight=7e-5,
                 mask_ratio=0.15, mask_type='channel',
                 inputs=dict(student_feature='student.backbone.layer4',
                             teacher_feature='teacher.backbone.layer4'))))
