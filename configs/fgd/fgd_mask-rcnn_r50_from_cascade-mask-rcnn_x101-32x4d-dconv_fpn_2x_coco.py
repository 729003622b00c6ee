# FGD (Yang et al., CVPR 2022): Mask R-CNN-R50 student <- Cascade Mask R-CNN X101-32x4d with
# deformable convs in stages 3-5 (mmdet's dcn/ model, the paper's teacher), COCO. The student's
# own 2x schedule (SGD lr 0.02), gradients clipped at 35; no inheriting (the heads differ). The
# four FPN convs are tapped: the fifth level of this FPN is a max-pool of the fourth.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

fgd = dict(type='FGDLoss', student_channels=256, teacher_channels=256, temp=0.5,
           alpha_fgd=5e-5, beta_fgd=2.5e-5, gamma_fgd=5e-5, lambda_fgd=5e-7)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::dcn/cascade-mask-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/dcn/'
        'cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco/'
        'cascade_mask_rcnn_x101_32x4d_fpn_dconv_c3-c5_1x_coco-e75f90c8.pth'),
    distill_losses={
        f'fgd_fpn{i}': dict(fgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(4)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
