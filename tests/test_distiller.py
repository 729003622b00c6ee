"""The generic distiller on real mmpretrain models: teacher freezing, taps, errors, outputs."""
import gc
import logging
import math

import pytest
import torch
from mmengine.registry import DefaultScope

from conftest import classification_batch, tiny_classifier, write_config
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
    # mmengine logs the total as 'loss'; the teacher's forward time is logged, not summed.
    assert set(losses) == {'loss_student', 'loss_kd', 'teacher_time'}
    # Same (train) mode as the loss step: the student's BN uses batch statistics.
    expected = HintonKDLoss(tau=2.0)(distiller.student(inputs, mode='tensor'),
                                     distiller.teacher(inputs, mode='tensor'))
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses['loss_student'].item() == pytest.approx(
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


def test_logged_total_is_the_sum_of_the_student_and_distillation_terms(teacher_files):
    """mmpretrain's head logs its cross-entropy as 'loss', the name mmengine gives the total:
    renamed, it no longer hides the total in the log."""
    distiller = build(teacher_files)
    inputs, samples = classification_batch()
    total, log_vars = distiller.parse_losses(distiller(inputs, samples, mode='loss'))
    cross_entropy = distiller.student.loss(inputs, samples)['loss']
    assert log_vars['loss_student'].item() == pytest.approx(cross_entropy.item(), rel=1e-5)
    assert log_vars['loss'].item() == pytest.approx(
        log_vars['loss_student'].item() + log_vars['loss_kd'].item(), rel=1e-6)
    assert log_vars['loss'].item() == pytest.approx(total.item(), rel=1e-6)
    assert log_vars['loss'].item() > cross_entropy.item()


@pytest.mark.parametrize('weight', [0.0, 0.5])
def test_student_loss_weight_scales_or_leaves_out_a_non_finite_ground_truth_loss(
        teacher_files, weight):
    distiller = build(teacher_files, student_loss_weight=weight)
    head = distiller.student.head
    own_loss = head.loss
    head.loss = lambda *args, **kwargs: {k: v * float('nan')  # a degenerate batch
                                         for k, v in own_loss(*args, **kwargs).items()}
    inputs, samples = classification_batch()
    total, log_vars = distiller.parse_losses(distiller(inputs, samples, mode='loss'))
    if weight == 0:
        assert 'loss_student' not in log_vars
        assert math.isnan(log_vars['unweighted_student'].item())  # still shown in the log
        assert total.item() == pytest.approx(log_vars['loss_kd'].item(), rel=1e-6)
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in distiller.student.parameters()
                   if p.grad is not None)
    else:  # a weight other than 0 multiplies: nan stays nan, as any weighted term would
        assert math.isnan(log_vars['loss_student'].item()) and math.isnan(total.item())


def test_student_loss_weight_scales_each_ground_truth_term(teacher_files):
    inputs, samples = classification_batch()
    torch.manual_seed(0)
    full = build(teacher_files)(inputs, samples, mode='loss')
    torch.manual_seed(0)  # the same student weights
    half = build(teacher_files, student_loss_weight=0.5)(inputs, samples, mode='loss')
    assert half['loss_student'].item() == pytest.approx(full['loss_student'].item() / 2,
                                                        rel=1e-5)
    assert half['loss_kd'].item() == pytest.approx(full['loss_kd'].item(), rel=1e-5)


@pytest.mark.parametrize('teacher_train_mode', [False, True])
def test_teacher_train_mode_lets_the_teacher_follow_train_as_mmpose_does(
        teacher_files, teacher_train_mode):
    distiller = build(teacher_files, teacher_train_mode=teacher_train_mode)
    bn = distiller.teacher.backbone.bn1
    running_mean = bn.running_mean.clone()
    inputs, samples = classification_batch()
    distiller.train()
    assert bn.training == teacher_train_mode
    losses = distiller(inputs, samples, mode='loss')
    # Batch statistics change what the teacher gives the loss, as in upstream runs.
    with torch.no_grad():
        teacher_logits = distiller.teacher(inputs, mode='tensor')
    expected = HintonKDLoss(tau=2.0)(distiller.student(inputs, mode='tensor'), teacher_logits)
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(bn.running_mean, running_mean) != teacher_train_mode  # drift iff on
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None and not p.requires_grad for p in distiller.teacher.parameters())
    distiller.eval()
    assert not bn.training  # validation: eval mode either way


def test_loose_teacher_checkpoints_load_what_fits(teacher_files, tmp_path):
    """``module.``-prefixed keys (a DDP checkpoint) load; with ``strict=False`` a checkpoint
    with an extra key and one missing loads the rest."""
    config, checkpoint = teacher_files
    saved = torch.load(checkpoint, weights_only=False)['state_dict']
    prefixed = str(tmp_path / 'ddp.pth')
    torch.save({'state_dict': {f'module.{k}': v for k, v in saved.items()}}, prefixed)
    distiller = build((config, prefixed))
    torch.testing.assert_close(distiller.teacher.state_dict(), saved)

    partial = {k: v for k, v in saved.items() if k != 'head.fc.bias'}
    partial['head.extra'] = torch.zeros(1)
    loose = str(tmp_path / 'partial.pth')
    torch.save({'state_dict': partial}, loose)
    with pytest.raises(ValueError, match='missing from the checkpoint \\(1\\): head.fc.bias'):
        build((config, loose))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(student=tiny_classifier(4),
                              teacher=dict(config=config, checkpoint=loose, strict=False),
                              distill_losses=dict(kd=KD))
    teacher = distiller.teacher.state_dict()
    assert torch.equal(teacher['head.fc.weight'], saved['head.fc.weight'])
    assert not torch.equal(teacher['head.fc.bias'], saved['head.fc.bias'])  # not in the file


def test_loss_names_must_be_identifiers_and_not_clash_with_the_student(teacher_files):
    with pytest.raises(ValueError, match="loss name 'kd-x' must be a Python identifier"):
        build(teacher_files, {'kd-x': KD})
    distiller = build(teacher_files, dict(student=KD))  # logs as loss_student, the student's
    with pytest.raises(KeyError, match="distillation loss 'student' logs as 'loss_student', "
                                       'which the student already uses'):
        distiller(*classification_batch(), mode='loss')


def test_teacher_taps_need_a_teacher(teacher_files):
    with pytest.raises(ValueError, match="distillation loss 'kd' taps the teacher, but the "
                                         'distiller has no teacher'):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            Distiller(student=tiny_classifier(4), teacher=None, distill_losses=dict(kd=KD))


def test_taps_that_record_nothing_or_change_their_call_count_fail():
    linear, unused = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    model = torch.nn.ModuleDict(dict(linear=linear, unused=unused))
    silent = ModuleTaps(model, [Tap.parse('student.unused')], 'student')
    with pytest.raises(RuntimeError, match="tap\\(s\\) student.unused recorded nothing"):
        silent.record(lambda: linear(torch.ones(1, 2)))
    taps = ModuleTaps(model, [Tap.parse('student.linear')], 'student')
    taps.record(lambda: linear(torch.ones(1, 2)))
    with pytest.raises(RuntimeError, match="called \\{'student.linear': 2\\} times, but "
                                           "\\{'student.linear': 1\\} on the first pass"):
        taps.record(lambda: linear(linear(torch.ones(1, 2))))


def test_a_teacher_preprocessed_differently_is_named_in_a_warning(teacher_files, tmp_path):
    from mmengine.logging import MMLogger
    config, checkpoint = teacher_files
    bgr = write_config(str(tmp_path / 'bgr_teacher.py'), default_scope='mmpretrain',
                       model=dict(tiny_classifier(8), data_preprocessor=dict(
                           type='ClsDataPreprocessor', mean=[1.0, 2.0, 3.0], std=[1.0, 1.0, 1.0],
                           to_rgb=True)))
    logged = []
    logger = MMLogger.get_current_instance()
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger.addHandler(handler)
    try:
        build((bgr, checkpoint))
    finally:
        logger.removeHandler(handler)
    assert any("prepares images differently (reverse channels=True, mean=[1.0, 2.0, 3.0]"
               in message and 'converted to its own preparation' in message
               for message in logged), logged


def test_a_switched_off_loss_still_reaches_what_only_it_trains(teacher_files):
    """Scale 0 with the student's own loss left out (student_loss_weight=0): the step's total is
    the switched-off loss's exact zero, and it must still reach the loss's align layer and the
    student modules up to its tap (zero gradients, not None, as DDP needs), and no further."""
    mse = dict(type='FeatureMSELoss', student_channels=4, teacher_channels=8,
               inputs=dict(student_feature='student.backbone.layer1',
                           teacher_feature='teacher.backbone.layer1'))
    distiller = build(teacher_files, dict(mse=mse), student_loss_weight=0)
    distiller.set_loss_scale('mse', 0.0)
    losses = distiller(*classification_batch(), mode='loss')
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert total.item() == 0.0
    total.backward()
    reached = [*distiller.distill_losses.mse.parameters(),
               *distiller.student.backbone.layer1.parameters()]
    assert all(p.grad is not None and not p.grad.any() for p in reached)
    assert all(p.grad is None for p in distiller.student.backbone.layer2.parameters())


def test_saved_teacher_weights_that_miss_keys_are_reported(teacher_files):
    """save_teacher=True loads the checkpoint's teacher weights; keys it lacks are reported
    as missing under the teacher's prefix (a strict load then fails), never silently kept."""
    saved = build(teacher_files, save_teacher=True).state_dict()
    dropped = 'teacher.head.fc.bias'
    del saved[dropped]
    distiller = build(teacher_files, save_teacher=True)
    result = distiller.load_state_dict(saved, strict=False)
    assert result.missing_keys == [dropped] and not result.unexpected_keys
    with pytest.raises(RuntimeError, match='teacher.head.fc.bias'):
        build(teacher_files, save_teacher=True).load_state_dict(saved, strict=True)
