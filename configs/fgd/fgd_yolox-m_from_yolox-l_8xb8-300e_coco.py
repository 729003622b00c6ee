# FGD (Yang et al., CVPR 2022): YOLOX-m student <- YOLOX-l teacher, COCO, the student's own
# 300-epoch recipe. Taps: the three output convs of YOLOXPAFPN (conv + BN + Swish), 192 student
# channels mapped to the teacher's 256 by the loss's 1x1 align conv. No inheriting (the widths
# differ), no gradient clipping (as the reference). The recipe's YOLOXModeSwitchHook finds
# the student as model.detector (see README.md).
_base_ = 'mmdet::yolox/yolox_m_8xb8-300e_coco.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

fgd = dict(type='FGDLoss', student_channels=192, teacher_channels=256, temp=0.5,
           alpha_fgd=2e-3, beta_fgd=1e-3, gamma_fgd=1e-3, lambda_fgd=1e-5)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmdet::yolox/yolox_l_8xb8-300e_coco.py',
        checkpoint='https://download.openmmlab.com/mmdetection/v2.0/yolox/'
        'yolox_l_8x8_300e_coco/yolox_l_8x8_300e_coco_20211126_140236-d3bd2b23.pth'),
    distill_losses={
        f'fgd_fpn{i}': dict(fgd, inputs=dict(student_feature=f'student.neck.out_convs.{i}',
                                             teacher_feature=f'teacher.neck.out_convs.{i}'))
        for i in range(3)
    })
