# NKD (Yang et al., ICCV 2023): DeiT-T <- DeiT III-S; the student's Mixup/CutMix and label
# smoothing still apply.
_base_ = 'mmpretrain::deit/deit-tiny_4xb256_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpretrain::deit3/deit3-small-p16_64xb64_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'deit3/deit3-small-p16_3rdparty_in1k_20221008-0f7c70cf.pth'),
    distill_losses=dict(
        nkd=dict(type='NKDLoss', tau=1.0, gamma=1.0,
                 inputs=dict(student_logits='student.head.layers.head',
                             teacher_logits='teacher.head.layers.head')),
    ))
