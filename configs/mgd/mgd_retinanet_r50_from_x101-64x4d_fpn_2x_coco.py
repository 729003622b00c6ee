# MGD (Yang et al., ECCV 2022): RetinaNet-R50 student <- RetinaNet-X101-64x4d, COCO. As the
# reference: the teacher is mmdet's multi-scale 3x X101-64x4d model, the student's own 2x
# schedule, gradients clipped at 35, neck and head inherited from the teacher, one MGD loss per
# FPN level (alpha 2e-5, 65% of positions masked).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

mgd = dict(type='MGDLoss', student_channels=256, teacher_channels=256, loss_weight=2e-5,
           mask_ratio=0.65)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::retinanet/retinanet_x101-64x4d_fpn_ms-640-800-3x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
        'retinanet_x101_64x4d_fpn_mstrain_3x_coco/'
        'retinanet_x101_64x4d_fpn_mstrain_3x_coco_20210719_051838-022c2187.pth'),
    inherit_modules=['neck', 'bbox_head'],
    distill_losses={
        f'mgd_fpn{i}': dict(mgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
