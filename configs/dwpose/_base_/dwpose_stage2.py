# DWPose stage 2, head-aware self-distillation: the stage-1 student is the teacher; a fresh
# head of the same architecture learns on the teacher's frozen backbone features (shared, not
# recomputed) from the teacher's own SimCC logits, with no ground-truth loss, for about 20% of
# stage 1's epochs. The exported student is the teacher's backbone plus the new head.
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

logit_loss = dict(
    type='SimCCDistillLoss', loss_weight=1.0,
    inputs=dict(student_x='student.head.cls_x', student_y='student.head.cls_y',
                teacher_x='teacher.head.cls_x', teacher_y='teacher.head.cls_y'))
