# MGD (Yang et al., ECCV 2022): Mask R-CNN-R50 student <- Cascade Mask R-CNN X101-32x4d with
# deformable convs in stages 3-5, COCO. The student's own 2x schedule, gradients clipped at 35,
# no inheriting (the heads differ). Two-stage detectors take the reference's two-stage values,
# alpha 5e-7 and 45% of positions masked (one-stage ones: 2e-5, 65%), on the four FPN convs.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_2x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

mgd = dict(type='MGDLoss', student_channels=256, teacher_channels=256, loss_weight=5e-7,
           mask_ratio=0.45)
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
        f'mgd_fpn{i}': dict(mgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(4)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
