# Pixel-wise Hinton KD on the decode-head logits: PSPNet-R18 student <- PSPNet-R101 (mmseg).
_base_ = 'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py'
runner_type = 'mmdistill.SafeRunner'  # crash-safe checkpoints, exact resume
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=dict(
        config='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
        checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/'
        'pspnet_r101-d8_512x1024_80k_cityscapes/'
        'pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'),
    distill_losses=dict(
        kd=dict(type='HintonKDLoss', tau=1.0, loss_weight=1.0,
                inputs=dict(student_logits='student.decode_head.conv_seg',
                            teacher_logits='teacher.decode_head.conv_seg'))))
