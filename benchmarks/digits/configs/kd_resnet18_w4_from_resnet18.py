# Classic KD: the student config, untouched, plus a teacher and one loss.
_base_ = ['./student_resnet18_w4.py']
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/teacher_resnet18.py',
        # benchmarks/digits/run.py trains the teacher first and passes its checkpoint here.
        checkpoint='work_dirs/digits/teacher/epoch_30.pth'),
    distill_losses=dict(
        kd=dict(type='HintonKDLoss', tau=4.0, loss_weight=1.0,
                inputs=dict(student_logits='student.head.fc',
                            teacher_logits='teacher.head.fc'))))
