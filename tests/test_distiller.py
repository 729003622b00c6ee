"""The generic distiller on real mmpretrain models: teacher freezing, taps, errors, outputs."""
import gc

import pytest
import torch
from mmengine.registry import DefaultScope

from conftest import classification_batch, tiny_classifier
from mmdistill.distillers import Distiller, ModuleTaps, Tap
from mmdistill.losses import HintonKDLoss

KD = dict(type='HintonKDLoss', tau=2.0,
          inputs=dict(student_logits='student.head.fc', teacher_logits='teacher.head.fc'))


def build(teacher_files, losses=None, **kwargs):
    config, checkpoint = teacher_files
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Distiller(student=tiny_classifier(4),
                         teacher=dict(config=config, checkpoint=checkpoint),
                         distill_losses=losses if losses is not None else dict(kd=KD),
                         **kwargs)


def test_loss_is_student_losses_plus_kd_on_tapped_logits(teacher_files):
    distiller = build(teacher_files)
    inputs, samples = classification_batch()
    losses = distiller(inputs, samples, mode='loss')
    assert set(losses) == {'loss', 'loss_kd', 'teacher_time'}
    # Same (train) mode as the loss step: the student's BN uses batch statistics.
    expected = HintonKDLoss(tau=2.0)(distiller.student(inputs, mode='tensor'),
                                     distiller.teacher(inputs, mode='tensor'))
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses['loss'].item() == pytest.approx(
        distiller.student.loss(inputs, samples)['loss'].item(), rel=1e-5)


def test_teacher_is_frozen_and_stays_in_eval_mode(teacher_files):
    distiller = build(teacher_files)
    distiller.train()
    assert distiller.student.training
    assert not any(m.training for m in distiller.teacher.modules())
    assert not any(p.requires_grad for p in distiller.teacher.parameters())
    bn = distiller.teacher.backbone.bn1
    running_mean = bn.running_mean.clone()
    inputs, samples = classification_batch()
    losses = distiller(inputs, samples, mode='loss')
    sum(losses.values()).backward()
    assert all(p.grad is None for p in distiller.teacher.parameters())
    assert distiller.student.head.fc.weight.grad.abs().sum() > 0
    assert distiller.student.backbone.conv1.weight.grad.abs().sum() > 0
    assert torch.equal(bn.running_mean, running_mean)  # eval-mode BN: no statistics update


def test_teacher_runs_only_as_deep_as_its_deepest_tap(teacher_files):
    losses = dict(fea=dict(type='FeatureMSELoss', student_channels=8, teacher_channels=16,
                           inputs=dict(student_feature='student.backbone.layer2',
                                       teacher_feature='teacher.backbone.layer2')))
    distiller = build(teacher_files, losses)
    calls = {'layer3': 0, 'head': 0}
    distiller.teacher.backbone.layer3.register_forward_hook(
        lambda *a: calls.__setitem__('layer3', calls['layer3'] + 1))
    distiller.teacher.head.fc.register_forward_hook(
        lambda *a: calls.__setitem__('head', calls['head'] + 1))
    inputs, samples = classification_batch()
    distiller(inputs, samples, mode='loss')  # the first pass runs whole and counts tap calls
    first = dict(calls)
    for _ in range(3):
        losses_out = distiller(inputs, samples, mode='loss')
    assert first == {'layer3': 1, 'head': 1}
    assert calls == first  # later passes stopped after layer2
    assert losses_out['loss_fea'] > 0


def test_zero_scale_skips_the_loss_and_the_teacher(teacher_files):
    distiller = build(teacher_files)
    calls = []
    distiller.teacher.backbone.register_forward_hook(lambda *a: calls.append(1))
    distiller.distill_losses.kd.register_forward_hook(lambda *a: calls.append('kd'))
    distiller.set_loss_scale('kd', 0.0)
    losses = distiller(*classification_batch(), mode='loss')
    assert losses['loss_kd'].item() == 0.0 and calls == []
    distiller.set_loss_scale('kd', 0.5)
    half = distiller(*classification_batch(), mode='loss')['loss_kd']
    distiller.set_loss_scale('kd', 1.0)
    full = distiller(*classification_batch(), mode='loss')['loss_kd']
    assert half.item() == pytest.approx(full.item() / 2, rel=1e-5)
    with pytest.raises(KeyError, match="no distillation loss 'fea'"):
        distiller.set_loss_scale('fea', 1.0)


def test_predict_and_tensor_modes_are_the_student(teacher_files):
    distiller = build(teacher_files).eval()
    inputs, samples = classification_batch()
    torch.testing.assert_close(distiller(inputs, mode='tensor'),
                               distiller.student(inputs, mode='tensor'))
    ours = distiller(inputs, samples, mode='predict')
    theirs = distiller.student(inputs, samples, mode='predict')
    torch.testing.assert_close(torch.stack([s.pred_score for s in ours]),
                               torch.stack([s.pred_score for s in theirs]))


def test_state_dict_leaves_the_teacher_out_unless_asked(teacher_files):
    distiller = build(teacher_files)
    state = distiller.state_dict()
    assert state and not any(k.startswith('teacher.') for k in state)
    assert any(k.startswith('student.') for k in state)
    result = distiller.load_state_dict(state, strict=True)  # no missing teacher keys
    assert not result.missing_keys and not result.unexpected_keys
    kept = build(teacher_files, save_teacher=True).state_dict()
    assert any(k.startswith('teacher.') for k in kept)


def test_taps_are_removed_with_the_distiller(teacher_files):
    distiller = build(teacher_files)
    student_fc, teacher_fc = distiller.student.head.fc, distiller.teacher.head.fc
    assert len(student_fc._forward_hooks) == 1 and len(teacher_fc._forward_hooks) == 1
    del distiller
    gc.collect()
    assert len(student_fc._forward_hooks) == 0 and len(teacher_fc._forward_hooks) == 0


def test_bad_module_path_names_the_closest_modules(teacher_files):
    bad = dict(KD, inputs=dict(student_logits='student.head.fcc',
                               teacher_logits='teacher.head.fc'))
    with pytest.raises(KeyError, match="student has no module 'head.fcc'.*Closest names: head.fc"):
        build(teacher_files, dict(kd=bad))
    with pytest.raises(ValueError, match="must look like 'student.<module path>'"):
        build(teacher_files, dict(kd=dict(KD, inputs=dict(student_logits='head.fc',
                                                          teacher_logits='teacher.head.fc'))))


def test_loss_inputs_are_checked_against_its_forward(teacher_files):
    bad = dict(KD, inputs=dict(student_logit='student.head.fc',
                               teacher_logits='teacher.head.fc'))
    with pytest.raises(ValueError, match="unknown: \\['student_logit'\\], missing: "
                                         "\\['student_logits'\\]"):
        build(teacher_files, dict(kd=bad))
    with pytest.raises(ValueError, match="needs 'inputs'"):
        build(teacher_files, dict(kd=dict(type='HintonKDLoss')))


def test_teacher_checkpoint_that_does_not_fit_names_the_keys(teacher_files, tmp_path):
    from mmpretrain.registry import MODELS
    config, _ = teacher_files
    wrong = str(tmp_path / 'wide.pth')
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # other tests leave theirs
        wide = MODELS.build(tiny_classifier(16))
    torch.save({'state_dict': wide.state_dict()}, wrong)
    with pytest.raises(ValueError, match='(?s)does not fit teacher config.*shape checkpoint vs '
                                         'model.*backbone.conv1.weight \\(16, 3, 3, 3\\) vs '
                                         '\\(8, 3, 3, 3\\)'):
        build((config, wrong))
    with pytest.raises(ValueError, match="must be dict\\(config=..., checkpoint=..."):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            Distiller(student=tiny_classifier(4), teacher=dict(config=config))


def test_shape_mismatch_error_names_the_loss_and_taps(teacher_files):
    losses = dict(fea=dict(type='FeatureMSELoss', student_channels=8, teacher_channels=16,
                           inputs=dict(student_feature='student.backbone.layer2',
                                       teacher_feature='teacher.backbone.layer3')))
    distiller = build(teacher_files, losses)
    with pytest.raises(ValueError, match="distillation loss 'fea' \\(student_feature=student."
                                         'backbone.layer2, teacher_feature=teacher.backbone.'
                                         'layer3\\).*student \\(4, 16, 8, 8\\) and teacher '
                                         '\\(4, 32, 4, 4\\)'):
        distiller(*classification_batch(), mode='loss')


def test_module_called_several_times_records_every_call():
    shared = torch.nn.Linear(2, 2)
    model = torch.nn.ModuleDict(dict(shared=shared))
    taps = ModuleTaps(model, [Tap.parse('teacher.shared'), Tap.parse('teacher.shared:input')],
                      'teacher')
    x = torch.ones(1, 2)
    records = taps.record(lambda: shared(shared(x)))
    outputs, inputs = records[Tap('teacher', 'shared')], records[Tap('teacher', 'shared', 'input')]
    assert len(outputs) == 2 and torch.equal(inputs[1], outputs[0]) and torch.equal(inputs[0], x)
    # Stopping early still waits for both calls of the shared module.
    records = taps.record(lambda: shared(shared(x)), stop_early=True)
    assert len(records[Tap('teacher', 'shared')]) == 2
    taps.remove()
    assert not shared._forward_hooks
