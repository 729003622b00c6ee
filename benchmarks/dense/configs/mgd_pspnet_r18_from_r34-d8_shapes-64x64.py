# MGD for segmentation (Yang et al., ECCV 2022), PSPNet-R18-d8 <- PSPNet-R34-d8, with the
# reference's settings: MGD on the last backbone stage (512 channels in both, alpha=2e-5,
# lambda=0.75) plus its logit term, channel-wise distillation of the decode head's output
# (tau=4, weight 3).
_base_ = './pspnet_r18-d8_shapes-64x64.py'
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='{{ fileDirname }}/pspnet_r34-d8_shapes-64x64.py',
        # benchmarks/dense/run.py trains the teacher first and passes its checkpoint here.
        checkpoint='work_dirs/dense_seg/teacher_seed0/iter_600.pth'),
    distill_losses=dict(
        mgd=dict(type='MGDLoss', student_channels=512, teacher_channels=512,
                 loss_weight=2e-5, mask_ratio=0.75,
                 inputs=dict(student_feature='student.backbone.layer4',
                             teacher_feature='teacher.backbone.layer4')),
        logit=dict(type='HintonKDLoss', tau=4.0, loss_weight=3.0, spatial=True,
                   inputs=dict(student_logits='student.decode_head.conv_seg',
                               teacher_logits='teacher.decode_head.conv_seg'))))
