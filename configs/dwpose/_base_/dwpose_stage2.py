# DWPose stage 2, head-aware self-distillation: the stage-1 student is the teacher; a fresh
# head of the same architecture learns on the teacher's frozen backbone features (shared, not
# recomputed) from the teacher's own SimCC logits, with no ground-truth loss, for about 20% of
# stage 1's epochs. The exported student is the teacher's backbone plus the new head.
# The shared backbone stays in eval mode (its BN buffers are the stage-1 student's, bit for
# bit); mmpose's DWPoseDistiller runs it in train mode, so its buffers drift: set
# model.teacher_train_mode=True to reproduce that. The weight-0 ground-truth loss is left out of
# the total and logged as unweighted_kpt (configs/README.md, "Where we differ ...").
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

logit_loss = dict(
    type='SimCCDistillLoss', loss_weight=1.0,
    inputs=dict(student_x='student.head.cls_x', student_y='student.head.cls_y',
                teacher_x='teacher.head.cls_x', teacher_y='teacher.head.cls_y'))
