# ViTKD + NKD (T=1, gamma=1) on the logits: the ViTKD config plus one loss.
_base_ = './vitkd_deit-tiny_from_deit3-small_4xb256_in1k.py'

model = dict(
    distill_losses=dict(
        nkd=dict(type='NKDLoss', tau=1.0, gamma=1.0,
                 inputs=dict(student_logits='student.head.layers.head',
                             teacher_logits='teacher.head.layers.head'))))
