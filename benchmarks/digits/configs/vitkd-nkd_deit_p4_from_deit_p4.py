# ViTKD + NKD (T=1, gamma=1 as in the DeiT recipes) on the logits: the ViTKD config plus one loss.
_base_ = ['./vitkd_deit_p4_from_deit_p4.py']

model = dict(
    distill_losses=dict(
        nkd=dict(type='NKDLoss', tau=1.0, gamma=1.0,
                 inputs=dict(student_logits='student.head.layers.head',
                             teacher_logits='teacher.head.layers.head'))))
