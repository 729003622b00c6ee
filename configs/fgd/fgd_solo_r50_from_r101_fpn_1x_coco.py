# FGD (Yang et al., CVPR 2022): SOLO-R50 student (its own 1x schedule) <- SOLO-R101 trained
# multi-scale 3x, COCO instance segmentation. mmdet publishes no SOLO-R101 weights (neither did
# the reference): train the teacher first, see configs/fgd/README.md, and point
# model.teacher.checkpoint at it. Gradients clipped at 35; neck and mask head inherited; the
# four FPN convs are tapped (the fifth level is a max-pool of the fourth).
_base_ = 'mmdet::solo/solo_r50_fpn_1x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

fgd = dict(type='FGDLoss', student_channels=256, teacher_channels=256, temp=0.5,
           alpha_fgd=1e-3, beta_fgd=5e-4, gamma_fgd=5e-4, lambda_fgd=5e-6)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::solo/solo_r50_fpn_3x_coco.py',  # made an R101 by cfg_options
        cfg_options={'model.backbone.depth': 101},
        checkpoint='work_dirs/solo_r101_fpn_3x_coco/epoch_36.pth'),
    inherit_modules=['neck', 'mask_head'],
    distill_losses={
        f'fgd_fpn{i}': dict(fgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(4)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
