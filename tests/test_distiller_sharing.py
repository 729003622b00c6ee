"""Student modules taken from the teacher: shared (frozen, reused outputs) and inherited
(copied at initialisation), and training on the distillation losses alone."""
import pytest
import torch
from mmengine.registry import DefaultScope

from conftest import classification_batch, tiny_classifier
from mmdistill.distillers import Distiller
from mmdistill.losses import HintonKDLoss

KD = dict(type='HintonKDLoss', tau=2.0,
          inputs=dict(student_logits='student.head.fc', teacher_logits='teacher.head.fc'))


def build(teacher_files, student_width=8, **kwargs):
    config, checkpoint = teacher_files
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Distiller(student=tiny_classifier(student_width),
                         teacher=dict(config=config, checkpoint=checkpoint),
                         distill_losses=dict(kd=KD), **kwargs)


def count_calls(module):
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_shared_backbone_runs_once_and_only_the_head_learns(teacher_files):
    distiller = build(teacher_files, shared_modules=['backbone'], student_loss_weight=0.0)
    assert distiller.student.backbone is distiller.teacher.backbone
    teacher_backbone = {k: v.clone() for k, v in distiller.teacher.backbone.state_dict().items()}
    distiller.init_weights()  # the student's initialisation must not reach the shared backbone
    for key, value in distiller.student.backbone.state_dict().items():
        assert torch.equal(value, teacher_backbone[key]), key

    distiller.train()
    assert not distiller.student.backbone.training  # frozen: the teacher's eval mode wins
    conv_calls = count_calls(distiller.teacher.backbone.conv1)
    inputs, samples = classification_batch()
    losses = distiller(inputs, samples, mode='loss')
    assert len(conv_calls) == 1  # the teacher's pass; the student reused its output

    # The distillation loss is KD between the student head and the teacher head on the same
    # (teacher) features; the student's own loss is weighted 0.
    with torch.no_grad():
        features = distiller.teacher.neck(distiller.teacher.backbone(inputs))
        expected = HintonKDLoss(tau=2.0)(distiller.student.head.fc(features[-1]),
                                         distiller.teacher.head.fc(features[-1]))
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert 'loss_student' not in losses  # weighted 0: out of the total, logged detached
    assert not losses['unweighted_student'].requires_grad
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert distiller.student.head.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in distiller.teacher.parameters())

    # predict/tensor: the student runs the shared backbone itself, with its class forward back.
    distiller.eval()
    assert 'forward' not in vars(distiller.teacher.backbone)
    calls_before = len(conv_calls)
    logits = distiller(inputs, mode='tensor')
    assert len(conv_calls) == calls_before + 1
    torch.testing.assert_close(logits, distiller.student.head.fc(
        distiller.teacher.neck(distiller.teacher.backbone(inputs))[-1]))

    # The student's weights include the shared backbone: an export is teacher backbone +
    # student head.
    state = distiller.state_dict()
    assert not any(k.startswith('teacher.') for k in state)
    assert torch.equal(state['student.backbone.conv1.weight'],
                       teacher_backbone['conv1.weight'])


def test_inherited_modules_start_as_the_teachers_and_then_train(teacher_files):
    distiller = build(teacher_files, inherit_modules=['head'])
    distiller.init_weights()
    student_fc, teacher_fc = distiller.student.head.fc, distiller.teacher.head.fc
    assert student_fc is not teacher_fc
    assert torch.equal(student_fc.weight, teacher_fc.weight)
    assert student_fc.weight.requires_grad and not teacher_fc.weight.requires_grad


def test_modules_of_different_shapes_cannot_be_shared_or_inherited(teacher_files):
    for option in ('shared_modules', 'inherit_modules'):
        with pytest.raises(ValueError, match='student.head and teacher.head differ in 1 '
                                             'weight.*fc.weight: student \\(5, 32\\), teacher '
                                             '\\(5, 64\\)'):
            build(teacher_files, student_width=4, **{option: ['head']})
    with pytest.raises(KeyError, match="student has no module 'backbon'"):
        build(teacher_files, shared_modules=['backbon'])


def test_inherited_modules_are_copied_from_the_teacher_checkpoint_not_into_the_teacher(
        teacher_files):
    """inherit_modules copies teacher → student: after init_weights the student's inherited
    modules hold the teacher checkpoint's weights, and the teacher is still its checkpoint."""
    _, checkpoint = teacher_files
    saved = torch.load(checkpoint, map_location='cpu')['state_dict']
    distiller = build(teacher_files, inherit_modules=['backbone.layer1', 'head'])
    torch.manual_seed(123)  # the student's own initialisation differs from the teacher's
    distiller.init_weights()
    inherited = {f'{path}.{key}': value for path in ('backbone.layer1', 'head')
                 for key, value in distiller.student.get_submodule(path).state_dict().items()}
    assert len(inherited) > 10 and 'head.fc.weight' in inherited
    for key, value in inherited.items():
        assert torch.equal(value, saved[key]), key
    teacher = distiller.teacher.state_dict()
    assert teacher.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(teacher[key], value), key
    # What is not inherited keeps the student's own initialisation.
    own = distiller.student.backbone.layer2[0].conv1.weight
    assert not torch.equal(own, saved['backbone.layer2.0.conv1.weight'])


def test_a_student_initialisation_that_writes_into_the_shared_module_is_undone(teacher_files):
    """A student ``init_cfg`` on every Conv2d reaches the shared backbone and writes into its
    tensors in place: the teacher's weights must come back (a copy of them kept by reference
    would be overwritten too)."""
    config, checkpoint = teacher_files
    student = dict(tiny_classifier(8), init_cfg=dict(type='Constant', layer='Conv2d', val=0.5))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(student=student, teacher=dict(config=config, checkpoint=checkpoint),
                              distill_losses=dict(kd=KD), shared_modules=['backbone'])
    teacher_conv = distiller.teacher.backbone.conv1.weight.detach().clone()
    assert not torch.all(teacher_conv == 0.5)
    distiller.init_weights()
    assert torch.equal(distiller.student.backbone.conv1.weight, teacher_conv)
    assert torch.all(distiller.student.head.fc.weight != 0.5)  # not a Conv2d: untouched
