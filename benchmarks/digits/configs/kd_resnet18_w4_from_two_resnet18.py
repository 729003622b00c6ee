# Classic KD from two teachers at once: the target is the mean of the two teachers' logits
# (its softmax is the normalised geometric mean of their softmax distributions). The same
# student config, untouched; two ResNet-18 teachers of one architecture, trained with
# different seeds (benchmarks/digits/run.py trains them and passes their checkpoints here).
_base_ = ['./student_resnet18_w4.py']
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teachers=dict(
        a=dict(config='{{ fileDirname }}/teacher_resnet18.py',
               checkpoint='work_dirs/digits/teacher/epoch_30.pth'),
        b=dict(config='{{ fileDirname }}/teacher_resnet18.py',
               checkpoint='work_dirs/digits/teacher_seed1/epoch_30.pth')),
    distill_losses=dict(
        kd=dict(type='HintonKDLoss', tau=4.0, loss_weight=1.0,
                inputs=dict(student_logits='student.head.fc',
                            teacher_logits=dict(mean=['teachers.a.head.fc',
                                                      'teachers.b.head.fc'])))))
