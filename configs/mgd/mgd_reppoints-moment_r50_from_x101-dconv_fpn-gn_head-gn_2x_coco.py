# MGD (Yang et al., ECCV 2022): RepPoints-moment R50 student <- RepPoints-moment X101 with
# deformable convs in stages 3-5 (GN neck and head), COCO. The student's own 2x schedule,
# gradients clipped at 35, neck and head inherited, one MGD loss per FPN level.
_base_ = 'mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

mgd = dict(type='MGDLoss', student_channels=256, teacher_channels=256, loss_weight=2e-5,
           mask_ratio=0.65)
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
        f'mgd_fpn{i}': dict(mgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
