# USKD, teacher-free (Yang et al., ICCV 2023): DeiT-T, the class token after block 5 (of 12); no
# teacher is built.
_base_ = 'mmpretrain::deit/deit-tiny_4xb256_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=None,
    distill_losses=dict(
        uskd=dict(type='USKDLoss', in_channels=192, num_classes=1000, alpha=1.0, beta=0.1,
                  mu=0.005, token_pool='cls',
                  inputs=dict(student_logits='student.head.layers.head',
                              student_feature='student.backbone.layers.5')),
    ))
