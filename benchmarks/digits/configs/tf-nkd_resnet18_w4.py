# tf-NKD, teacher-free: the student config plus its own soft target term on the logits.
_base_ = ['./student_resnet18_w4.py']
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=None,
    distill_losses=dict(
        tf_nkd=dict(type='TfNKDLoss', loss_weight=1.0,
                    inputs=dict(student_logits='student.head.fc'))))
