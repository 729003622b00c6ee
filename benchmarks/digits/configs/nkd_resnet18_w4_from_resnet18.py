# NKD: the student config plus the teacher and NKD on the logits, with the paper's CIFAR-100
# settings (T=3, gamma=3.5): the digits are a small-image, small-data task like CIFAR.
_base_ = ['./student_resnet18_w4.py']
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/teacher_resnet18.py',
        checkpoint='work_dirs/digits/teacher/epoch_30.pth'),
    distill_losses=dict(
        nkd=dict(type='NKDLoss', tau=3.0, gamma=3.5,
                 inputs=dict(student_logits='student.head.fc',
                             teacher_logits='teacher.head.fc'))))
