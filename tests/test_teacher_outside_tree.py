"""The teacher is outside the distiller's module tree: the optimizer never sees it, device and
dtype moves still reach it, and checkpoints hold it only when asked."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from test_distiller import build
from conftest import classification_batch

SKIPPED = 'is skipped since its requires_grad'


@pytest.mark.parametrize('paramwise_cfg', [None, dict(norm_decay_mult=0.0, bias_lr_mult=2.0)])
def test_optimizer_gets_the_student_and_loss_layers_and_no_teacher(teacher_files, monkeypatch,
                                                                   paramwise_cfg):
    losses = dict(fea=dict(type='FeatureMSELoss', student_channels=8, teacher_channels=16,
                           inputs=dict(student_feature='student.backbone.layer2',
                                       teacher_feature='teacher.backbone.layer2')))
    distiller = build(teacher_files, losses)
    logged = []
    monkeypatch.setattr('mmengine.optim.optimizer.default_constructor.print_log',
                        lambda msg, *args, **kwargs: logged.append(msg))
    cfg = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
    if paramwise_cfg:
        cfg['paramwise_cfg'] = paramwise_cfg
    optim_wrapper = build_optim_wrapper(distiller, cfg)
    assert not [msg for msg in logged if SKIPPED in msg]

    in_groups = [p for group in optim_wrapper.optimizer.param_groups for p in group['params']]
    teacher = {id(p) for p in distiller.teacher.parameters()}
    trainable = list(distiller.student.parameters()) + \
        list(distiller.distill_losses.parameters())
    assert len(teacher) > 0 and not teacher & {id(p) for p in in_groups}
    assert {id(p) for p in in_groups} == {id(p) for p in trainable}
    assert len(in_groups) == len(trainable)
    assert not any(name.startswith('teacher') for name, _ in distiller.named_parameters())
    assert 'teacher' not in dict(distiller.named_children())


def test_to_moves_the_teacher_and_its_preprocessor(teacher_files):
    distiller = build(teacher_files).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in distiller.teacher.parameters())
    assert distiller.teacher.backbone.bn1.running_mean.dtype == torch.float64
    distiller.to('meta')
    assert distiller.teacher.head.fc.weight.is_meta
    assert distiller.teacher.data_preprocessor._device == torch.device('meta')


def test_teacher_weights_round_trip_only_with_save_teacher(teacher_files):
    saving = build(teacher_files, save_teacher=True)
    state = {k: v.clone() for k, v in saving.state_dict().items()}
    teacher_keys = [k for k in state if k.startswith('teacher.')]
    assert len(teacher_keys) == len(saving.teacher.state_dict())
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    result = saving.load_state_dict(changed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(saving.teacher.head.fc.bias, state['teacher.head.fc.bias'] + 1)

    # Without save_teacher a checkpoint's teacher weights are ignored: the teacher's own
    # checkpoint stays what it runs with.
    plain = build(teacher_files)
    before = plain.teacher.head.fc.bias.clone()
    result = plain.load_state_dict(changed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(plain.teacher.head.fc.bias, before)
    torch.testing.assert_close(plain.student.head.fc.bias, state['student.head.fc.bias'] + 1)


def test_a_training_step_leaves_the_teacher_as_loaded(teacher_files):
    distiller = build(teacher_files)
    optim_wrapper = build_optim_wrapper(distiller, dict(optimizer=dict(type='SGD', lr=0.5)))
    before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    student_before = distiller.student.head.fc.weight.clone()
    inputs, samples = classification_batch()
    distiller.train_step(dict(inputs=inputs, data_samples=samples), optim_wrapper)
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(distiller.student.head.fc.weight, student_before)
