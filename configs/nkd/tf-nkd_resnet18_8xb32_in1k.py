# tf-NKD, teacher-free (Yang et al., arXiv:2208.10139, NKD's first version): ResNet-18 on
# ImageNet with its own soft target term on the logits; no teacher is built.
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=None,
    distill_losses=dict(
        tf_nkd=dict(type='TfNKDLoss', loss_weight=1.0,
                    inputs=dict(student_logits='student.head.fc'))))
