# MGD (Yang et al., ECCV 2022) on the five FPN levels, RetinaNet-R18 <- RetinaNet-R50, with the
# reference detection hyperparameters: alpha=2e-5, lambda (masked fraction)=0.65, spatial mask.
_base_ = './retinanet_r18_fpn_shapes-160.py'
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/retinanet_r50_fpn_shapes-160.py',
        checkpoint='work_dirs/dense_det/teacher_seed0/epoch_24.pth'),
    distill_losses={
        f'mgd{i}': dict(
            type='MGDLoss', student_channels=64, teacher_channels=64, loss_weight=2e-5,
            mask_ratio=0.65,
            inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                        teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
