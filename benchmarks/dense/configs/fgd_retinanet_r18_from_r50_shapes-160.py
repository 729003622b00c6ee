# FGD (Yang et al., CVPR 2022) on the five FPN levels, RetinaNet-R18 <- RetinaNet-R50, with the
# reference RetinaNet hyperparameters: T=0.5, alpha=1e-3, beta=5e-4, gamma=5e-4, lambda=5e-6.
_base_ = './retinanet_r18_fpn_shapes-160.py'
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/retinanet_r50_fpn_shapes-160.py',
        # benchmarks/dense/run.py trains the teacher first and passes its checkpoint here.
        checkpoint='work_dirs/dense_det/teacher_seed0/epoch_24.pth'),
    distill_losses={
        f'fgd{i}': dict(
            type='FGDLoss', student_channels=64, teacher_channels=64, temp=0.5,
            alpha_fgd=1e-3, beta_fgd=5e-4, gamma_fgd=5e-4, lambda_fgd=5e-6,
            inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                        teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
