# FGD (Yang et al., CVPR 2022): RetinaNet-R50 student <- RetinaNet-X101-64x4d teacher, COCO.
# The reference's recipe: the student's own 2x schedule (SGD lr 0.01), gradients clipped at 35,
# the student's neck and head start as the teacher's (both are 256-channel FPN + RetinaHead).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

fgd = dict(type='FGDLoss', student_channels=256, teacher_channels=256, temp=0.5,
           alpha_fgd=1e-3, beta_fgd=5e-4, gamma_fgd=5e-4, lambda_fgd=5e-6)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
        'retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth'),
    inherit_modules=['neck', 'bbox_head'],
    distill_losses={
        f'fgd_fpn{i}': dict(fgd, inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                                             teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
