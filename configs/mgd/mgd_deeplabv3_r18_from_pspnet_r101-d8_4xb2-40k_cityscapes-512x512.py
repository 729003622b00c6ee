# MGD for segmentation (Yang et al., ECCV 2022): DeepLabV3-R18 <- PSPNet-R101 on Cityscapes, as the
# reference trains it: 512x512 crops, 40k iterations; MGD on the last backbone stage (512 <- 2048
# channels, alpha=2e-5, lambda=0.75) plus its logit term, channel-wise distillation of the
# decode head's output (tau=4, weight 3).
_base_ = 'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=dict(_base_.model,
                 data_preprocessor=dict(_base_.model.data_preprocessor, size=crop_size)),
    teacher=dict(
        config='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
        checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/'
        'pspnet_r101-d8_512x1024_80k_cityscapes/'
        'pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'),
    distill_losses=dict(
        mgd=dict(type='MGDLoss', student_channels=512, teacher_channels=2048,
                 loss_weight=2e-5, mask_ratio=0.75,
                 inputs=dict(student_feature='student.backbone.layer4',
                             teacher_feature='teacher.backbone.layer4')),
        logit=dict(type='HintonKDLoss', tau=4.0, loss_weight=3.0, spatial=True,
                   inputs=dict(student_logits='student.decode_head.conv_seg',
                               teacher_logits='teacher.decode_head.conv_seg'))))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(step, crop_size=crop_size) if step['type'] == 'RandomCrop' else step
    for step in _base_.train_pipeline
]))
train_cfg = dict(max_iters=40000, val_interval=4000)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=40000, by_epoch=False)
]
