# FGD (Yang et al., CVPR 2022): RepPoints-moment R50 student <- RepPoints-moment X101 with
# deformable convs in stages 3-5 (GN neck and head; the reference's teacher), COCO. The student's
# own 2x schedule (SGD lr 0.01), gradients clipped at 35, neck and head inherited from the teacher.
_base_ = 'mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

fgd = dict(type='FGDLoss', student_channels=256, teacher_channels=256, temp=0.5,
           alpha_fgd=1.6e-3, beta_fgd=8e-4, gamma_fgd=8e-4, lambda_fgd=8e-6)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::reppoints/reppoints-moment_x101-dconv-c3-c5_fpn-gn_head-gn_2x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/reppoints/'
        'reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco/'
        'reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco_20200329-f87da1ea.pth'),
    inherit_modules=['neck', 'bbox_head'],
    distill_losses={
        f'fgd_fpn{i}': dict(fgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
