# FPN feature imitation for detection: RetinaNet-R18 student <- RetinaNet-R50 teacher (mmdet).
# Both FPNs give 256 channels, so no align layer is needed; the teacher stops after its neck.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

fpn_level_loss = dict(type='FeatureMSELoss', student_channels=256, teacher_channels=256,
                      reduction='mean', loss_weight=1.0)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
        'retinanet_r50_fpn_1x_coco/retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth'),
    distill_losses={
        f'fpn{i}': dict(
            fpn_level_loss,
            inputs=dict(student_feature=f'student.neck.fpn_convs.{i}.conv',
                        teacher_feature=f'teacher.neck.fpn_convs.{i}.conv'))
        for i in range(5)
    })
