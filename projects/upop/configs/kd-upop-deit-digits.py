# UPop with knowledge distillation: the pruned student learns also from the unpruned model
# (teacher = the dense checkpoint, frozen), through mmdistill's Distiller and Hinton KD on the
# logits. The student starts from the same dense weights (init_cfg Pretrained); the hook prunes
# the student only (model_path='student').
_base_ = ['./upop-deit-digits.py']
custom_imports = dict(imports=['mmdistill', 'projects.upop.upop'], allow_failed_imports=False)

dense_checkpoint = 'work_dirs/upop/dense_seed0/epoch_80.pth'
model = dict(
    _delete_=True,
    type='mmdistill.Distiller',
    student=dict(_base_.model, init_cfg=dict(type='Pretrained', checkpoint=dense_checkpoint)),
    teacher=dict(config='{{ fileDirname }}/deit-digits.py', checkpoint=dense_checkpoint),
    distill_losses=dict(
        kd=dict(type='HintonKDLoss', tau=4.0, loss_weight=1.0,
                inputs=dict(student_logits='student.head.layers.head',
                            teacher_logits='teacher.head.layers.head'))))
load_from = None
custom_hooks = [dict(type='mmdistill.UPopHook', budget=0.5,
                     search_epochs=_base_.search_epochs, interval=10, model_path='student',
                     scope='backbone')]
