# USKD, teacher-free: the student config plus USKD on its logits and its stage-3 feature
# (16 channels at width 4), with the paper's CIFAR-100 weights (alpha=0.1, beta=0.1, mu=0.1).
_base_ = ['./student_resnet18_w4.py']
custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=_base_.model,
    teacher=None,
    distill_losses=dict(
        uskd=dict(type='USKDLoss', in_channels=16, num_classes=10, alpha=0.1, beta=0.1,
                  mu=0.1,
                  inputs=dict(student_logits='student.head.fc',
                              student_feature='student.backbone.layer3'))))
