# Token merging and distillation together: the CrossGET-merging ViT is the student, the plain
# ViT (trained first, e.g. by projects/crossget/run.py) its teacher, with Hinton KD on logits.
_base_ = ['./crossget_vit-p4_digits.py']

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/vit-p4_digits.py',
        checkpoint='work_dirs/crossget/seed0/vit/epoch_30.pth'),
    distill_losses=dict(
        kd=dict(type='HintonKDLoss', tau=4.0, loss_weight=1.0,
                inputs=dict(student_logits='student.head.layers.head',
                            teacher_logits='teacher.head.layers.head'))))
