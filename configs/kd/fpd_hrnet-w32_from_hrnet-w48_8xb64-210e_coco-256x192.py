# Heatmap pose distillation: HRNet-W32 student <- HRNet-W48 teacher (mmpose, COCO body,
# 256x192 input, 64x48 heatmaps), as in Fast Pose Distillation (Zhang et al., "Fast Human
# Pose Estimation", CVPR 2019):
#     L = (1 - a) * MSE(H_s, H_gt) + a * MSE(H_s, H_t),  a = 0.5,
# both mean squared errors over N x K x H x W heatmaps, so both terms have the scale of the
# student's own KeypointMSELoss. (Hinton KD does not fit heatmaps: its softmax over the K
# keypoint channels at each pixel compares nothing a heatmap encodes, and its loss stays near
# zero. For a distribution-style term, HintonKDLoss(spatial=True) spreads each keypoint's
# heatmap over its H x W positions instead.)
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmpose::body_2d_keypoint/topdown_heatmap/coco/'
        'td-hm_hrnet-w48_8xb32-210e_coco-256x192.py',
        checkpoint='https://download.openmmlab.com/mmpose/v1/body_2d_keypoint/'
        'topdown_heatmap/coco/td-hm_hrnet-w48_8xb32-210e_coco-256x192-0e67c616_20220913.pth'),
    distill_losses=dict(
        # head.final_layer is the 1x1 conv that makes the K=17 heatmaps.
        heatmap=dict(type='FeatureMSELoss', student_channels=17, teacher_channels=17,
                     reduction='mean', loss_weight=0.5,
                     inputs=dict(student_feature='student.head.final_layer',
                                 teacher_feature='teacher.head.final_layer')),
        # A feature term on the backbone output the head reads (32 vs 48 channels, aligned
        # by a 1x1 conv) would be, with a weight of your choice:
        # feature=dict(type='FeatureMSELoss', student_channels=32, teacher_channels=48,
        #              reduction='mean', loss_weight=..., inputs=dict(
        #                  student_feature='student.head.final_layer:input',
        #                  teacher_feature='teacher.head.final_layer:input')),
    ),
    student_loss_weight=0.5)
