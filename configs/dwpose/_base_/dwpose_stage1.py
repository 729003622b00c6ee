# DWPose stage 1 (Yang et al., "Effective Whole-body Pose Estimation with Two-stages
# Distillation", ICCVW 2023): a bigger RTMPose teaches a smaller one through
#   - the last backbone stage (CSPNeXt stage 4), 1x1 align conv, summed squared error / N,
#     weight 7e-5 (what the released models used);
#   - the SimCC x/y logits, KL(softmax(beta z_t) || softmax(beta z_s)) over all keypoints,
#     weight 0.1;
# both scaled by 1 - epoch / max_epochs through the generic weight-schedule hook.
# The teacher stays in eval mode; mmpose's DWPoseDistiller lets it follow model.train() (batch
# statistics, drifting BN buffers): set model.teacher_train_mode=True to reproduce that
# (configs/README.md, "Where we differ from mmpose's DWPoseDistiller").
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

feature_loss = dict(
    type='FeatureMSELoss', reduction='batch', loss_weight=7e-5,
    inputs=dict(student_feature='student.backbone.stage4',
                teacher_feature='teacher.backbone.stage4'))
logit_loss = dict(
    type='SimCCDistillLoss', loss_weight=0.1,
    inputs=dict(student_x='student.head.cls_x', student_y='student.head.cls_y',
                teacher_x='teacher.head.cls_x', teacher_y='teacher.head.cls_y'))
linear_decay_hook = dict(
    type='mmdistill.DistillLossWeightHook', policy='linear', by='epoch', start=1.0, end=0.0)
