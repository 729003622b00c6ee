# ViTKD (Yang et al., 2022): blocks 0-1 mimicked, last-layer tokens generated.
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpretrain::deit3/deit3-base-p16_64xb64_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'deit3/deit3-base-p16_3rdparty_in1k_20221008-60b8c8bf.pth'),
    distill_losses=dict(
        vitkd=dict(type='ViTKDLoss', student_dims=384, teacher_dims=768, alpha=3e-5,
                   beta=3e-6, mask_ratio=0.5,
                   inputs=dict(student_block0='student.backbone.layers.0',
                               student_block1='student.backbone.layers.1',
                               student_final='student.backbone.ln1',
                               teacher_block0='teacher.backbone.layers.0',
                               teacher_block1='teacher.backbone.layers.1',
                               teacher_final='teacher.backbone.ln1')),
    ))
