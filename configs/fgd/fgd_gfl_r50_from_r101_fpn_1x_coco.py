# FGD (Yang et al., CVPR 2022): GFL-R50 student (its own 1x schedule, as the reference trains
# it) <- GFL-R101 (multi-scale 2x), COCO. Gradients clipped at 35; neck and head inherited.
_base_ = 'mmdet::gfl/gfl_r50_fpn_1x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

fgd = dict(type='FGDLoss', student_channels=256, teacher_channels=256, temp=0.5,
           alpha_fgd=1e-3, beta_fgd=5e-4, gamma_fgd=5e-4, lambda_fgd=5e-6)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/gfl/'
        'gfl_r101_fpn_mstrain_2x_coco/gfl_r101_fpn_mstrain_2x_coco_20200629_200126-dd12f847.pth'),
    inherit_modules=['neck', 'bbox_head'],
    distill_losses={
        f'fgd_fpn{i}': dict(fgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
