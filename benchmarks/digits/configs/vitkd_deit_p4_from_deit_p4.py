# ViTKD: the ViT student config plus the ViT teacher, blocks 0-1 mimicked and the final-norm
# tokens generated, with the paper's weights (alpha=3e-5, beta=3e-6, lambda=0.5).
_base_ = ['./student_deit_p4.py']
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/teacher_deit_p4.py',
        # benchmarks/digits/run.py trains the teacher first and passes its checkpoint here.
        checkpoint='work_dirs/digits/teacher_deit/epoch_60.pth'),
    distill_losses=dict(
        vitkd=dict(type='ViTKDLoss', student_dims=32, teacher_dims=64, alpha=3e-5,
                   beta=3e-6, mask_ratio=0.5,
                   inputs=dict(student_block0='student.backbone.layers.0',
                               student_block1='student.backbone.layers.1',
                               student_final='student.backbone.ln1',
                               teacher_block0='teacher.backbone.layers.0',
                               teacher_block1='teacher.backbone.layers.1',
                               teacher_final='teacher.backbone.ln1'))))
