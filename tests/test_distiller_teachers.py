"""Several named teachers (``teachers=``) on real mmpretrain models: one loss reading two of
them, each frozen, run only when tapped and only as deep as its own taps, outside the module
tree, the optimizer and checkpoints, moved with the distiller."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from conftest import classification_batch, tiny_classifier, write_config
from mmdistill.distillers import Distiller, Tap
from mmdistill.distillers.teachers import named_teachers

KD_MEAN = dict(type='HintonKDLoss', tau=2.0, inputs=dict(
    student_logits='student.head.fc',
    teacher_logits=dict(mean=['teachers.a.head.fc', 'teachers.b.head.fc'])))
FEA_A = dict(type='FeatureMSELoss', student_channels=8, teacher_channels=16,
             inputs=dict(student_feature='student.backbone.layer2',
                         teacher_feature='teachers.a.backbone.layer2'))


@pytest.fixture
def two_teachers(tmp_path):
    """One width-8 teacher config (mmpretrain scope) and two checkpoints of different seeds."""
    from mmpretrain.registry import MODELS
    config = write_config(osp.join(tmp_path, 'teacher.py'), default_scope='mmpretrain',
                          model=tiny_classifier(8))
    checkpoints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            teacher = MODELS.build(tiny_classifier(8))
        checkpoints.append(osp.join(tmp_path, f'teacher_{seed}.pth'))
        torch.save({'state_dict': teacher.state_dict(), 'meta': {}}, checkpoints[-1])
    return config, checkpoints


def build(two_teachers, losses=None, a=None, b=None, **kwargs):
    config, (first, second) = two_teachers
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Distiller(
            student=tiny_classifier(4),
            teachers=dict(a=dict(config=config, checkpoint=first, **(a or {})),
                          b=dict(config=config, checkpoint=second, **(b or {}))),
            distill_losses=losses if losses is not None else dict(kd=KD_MEAN), **kwargs)


def models(distiller):
    return distiller.teachers['a'].model, distiller.teachers['b'].model


def test_one_loss_reads_the_mean_of_two_teachers_logits(two_teachers):
    distiller = build(two_teachers)
    inputs, samples = classification_batch()
    losses = distiller(inputs, samples, mode='loss')
    assert set(losses) == {'loss_student', 'loss_kd', 'teacher_time', 'teacher_time_a',
                           'teacher_time_b'}
    assert losses['teacher_time'].item() == pytest.approx(
        losses['teacher_time_a'].item() + losses['teacher_time_b'].item())
    a, b = models(distiller)
    with torch.no_grad():
        za, zb = a(inputs, mode='tensor'), b(inputs, mode='tensor')
        zs = distiller.student(inputs, mode='tensor')
    assert (za - zb).abs().max() > 1e-2  # two different teachers
    # KD by hand: tau^2 * mean_n sum_c p_t log(p_t / p_s), target softmax((za + zb) / 2 / tau)
    tau = 2.0
    p_t = F.softmax((za + zb) / 2 / tau, dim=1)
    expected = tau**2 * (p_t * (p_t.log() - F.log_softmax(zs / tau, dim=1))).sum(1).mean()
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-5)
    one_teacher = tau**2 * (F.softmax(za / tau, 1) * (F.log_softmax(za / tau, 1) -
                                                     F.log_softmax(zs / tau, 1))).sum(1).mean()
    assert abs(one_teacher.item() - expected.item()) > 1e-4  # the second teacher counted


def test_gradients_reach_only_the_student_and_the_loss_layers(two_teachers):
    distiller = build(two_teachers, dict(kd=KD_MEAN, fea=FEA_A))
    distiller.train()
    assert not any(m.training for model in models(distiller) for m in model.modules())
    losses = distiller(*classification_batch(), mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for model in models(distiller):
        assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert distiller.student.backbone.conv1.weight.grad.abs().sum() > 0
    assert distiller.distill_losses.fea.align.weight.grad.abs().sum() > 0


def test_teachers_stay_out_of_parameters_optimizer_and_checkpoints(two_teachers):
    distiller = build(two_teachers, dict(kd=KD_MEAN, fea=FEA_A))
    optim_wrapper = build_optim_wrapper(distiller, dict(optimizer=dict(type='SGD', lr=0.1)))
    in_groups = {id(p) for g in optim_wrapper.optimizer.param_groups for p in g['params']}
    teachers = {id(p) for model in models(distiller) for p in model.parameters()}
    assert teachers and not teachers & in_groups
    assert in_groups == {id(p) for p in distiller.parameters()}
    assert not any(name.startswith('teacher') for name, _ in distiller.named_parameters())
    assert not any(key.startswith('teacher') for key in distiller.state_dict())

    saving = build(two_teachers, save_teacher=True)
    state = {k: v.clone() for k, v in saving.state_dict().items()}
    for name, model in zip('ab', models(saving)):
        keys = [k for k in state if k.startswith(f'teachers.{name}.')]
        assert len(keys) == len(model.state_dict())
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    result = saving.load_state_dict(changed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(models(saving)[1].head.fc.bias,
                               state['teachers.b.head.fc.bias'] + 1)


def count_calls(module):
    """Calls of ``module`` (a pre-hook: it counts even where a tap stops the pass there)."""
    calls = []
    module.register_forward_pre_hook(lambda *args: calls.append(1))
    return calls


def test_each_teacher_stops_at_its_own_deepest_tap_and_runs_only_when_tapped(two_teachers):
    kd_b = dict(type='HintonKDLoss', inputs=dict(student_logits='student.head.fc',
                                                 teacher_logits='teachers.b.head.fc'))
    distiller = build(two_teachers, dict(fea=FEA_A, kd=kd_b))
    a, b = models(distiller)
    a_layer3, a_fc, b_fc = count_calls(a.backbone.layer3), count_calls(a.head.fc), \
        count_calls(b.head.fc)
    inputs, samples = classification_batch()
    distiller(inputs, samples, mode='loss')  # the first pass runs whole, counting tap calls
    for _ in range(2):
        distiller(inputs, samples, mode='loss')
    assert (len(a_layer3), len(a_fc), len(b_fc)) == (1, 1, 3)  # a stopped after layer2
    distiller.set_loss_scale('kd', 0.0)  # no active loss taps b: b does not run
    losses = distiller(inputs, samples, mode='loss')
    assert len(b_fc) == 3 and losses['teacher_time_b'].item() == 0.0
    assert losses['teacher_time_a'].item() > 0


def test_each_teacher_has_its_own_options_and_moves_with_the_distiller(two_teachers):
    distiller = build(two_teachers, a=dict(dtype='bfloat16'),
                      b=dict(cfg_options={'model.head.loss.loss_weight': 0.5}))
    a, b = models(distiller)
    assert a.head.fc.weight.dtype == torch.bfloat16 and b.head.fc.weight.dtype == torch.float32
    assert (a.head.loss_module.loss_weight, b.head.loss_module.loss_weight) == (1.0, 0.5)
    distiller.to(torch.float64)
    assert all(p.dtype == torch.float64 for model in (a, b) for p in model.parameters())
    distiller.to('meta')
    for model in (a, b):
        assert model.head.fc.weight.is_meta
        assert model.data_preprocessor._device == torch.device('meta')


def test_teacher_and_teachers_together_or_bad_names_are_refused(two_teachers):
    config, (first, _) = two_teachers
    teacher = dict(config=config, checkpoint=first)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match='teacher=dict.*or teachers=dict.*not both'):
            Distiller(student=tiny_classifier(4), teacher=teacher, teachers=dict(a=teacher))
        with pytest.raises(ValueError, match="teacher name 'det-r50' must be a Python "
                                             "identifier.*e.g. 'det_r50'"):
            Distiller(student=tiny_classifier(4), teachers={'det-r50': teacher})
        with pytest.raises(ValueError, match='no single teacher'):
            Distiller(student=tiny_classifier(4), teachers=dict(a=teacher),
                      inherit_modules=['head'])
    typo = dict(KD_MEAN, inputs=dict(student_logits='student.head.fc',
                                     teacher_logits='teachers.aa.head.fc'))
    with pytest.raises(ValueError, match="taps 'teachers.aa.head.fc', but the distiller has no "
                                         "teacher 'teachers.aa'; its teachers are teachers.a, "
                                         "teachers.b. Did you mean 'teachers.a'"):
        build(two_teachers, dict(kd=typo))
    single = dict(KD_MEAN, inputs=dict(student_logits='student.head.fc',
                                       teacher_logits='teacher.head.fc'))
    with pytest.raises(ValueError, match="no teacher 'teacher'; its teachers are teachers.a"):
        build(two_teachers, dict(kd=single))


def test_a_tap_on_an_unknown_teacher_fails_before_any_checkpoint_is_read(two_teachers,
                                                                         tmp_path):
    # The checkpoints do not exist: loading one would fail with a missing file, so the tap
    # error proves that no teacher was built.
    config, _ = two_teachers
    missing = str(tmp_path / 'no_such_teacher.pth')
    typo = dict(KD_MEAN, inputs=dict(student_logits='student.head.fc',
                                     teacher_logits='teachers.dett.head.fc'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match="distillation loss 'kd' taps 'teachers.dett.head"
                                             ".fc', but the distiller has no teacher 'teachers"
                                             ".dett'; its teachers are teachers.det, teachers"
                                             ".cls. Did you mean 'teachers.det'"):
            Distiller(student=tiny_classifier(4), distill_losses=dict(kd=typo),
                      teachers=dict(det=dict(config=config, checkpoint=missing),
                                    cls=dict(config=config, checkpoint=missing)))
        single = dict(KD_MEAN, inputs=dict(student_logits='student.head.fc',
                                           teacher_logits='teachers.a.head.fc'))
        with pytest.raises(ValueError, match="taps 'teachers.a.head.fc', but the distiller has "
                                             "no teacher 'teachers.a'; its teachers are "
                                             "teacher. Did you mean 'teacher'"):
            Distiller(student=tiny_classifier(4), distill_losses=dict(kd=single),
                      teacher=dict(config=config, checkpoint=missing))
        # The same teacher, tapped right, reads its checkpoint and fails on the missing file.
        with pytest.raises(FileNotFoundError, match='no_such_teacher.pth'):
            Distiller(student=tiny_classifier(4), distill_losses=dict(kd=KD_MEAN),
                      teachers=dict(a=dict(config=config, checkpoint=missing),
                                    b=dict(config=config, checkpoint=missing)))


def test_a_mean_of_taps_of_different_shapes_names_them(two_teachers):
    mixed = dict(FEA_A, inputs=dict(
        student_feature='student.backbone.layer2',
        teacher_feature=dict(mean=['teachers.a.backbone.layer2', 'teachers.b.backbone.layer3'])))
    distiller = build(two_teachers, dict(fea=mixed))
    with pytest.raises(ValueError, match=r"mean\(teachers.a.backbone.layer2, teachers.b.backbone"
                                         r".layer3\) needs tensors of one shape.*\(4, 16, 8, 8\)"
                                         r".*\(4, 32, 4, 4\)"):
        distiller(*classification_batch(), mode='loss')


def test_teacher_is_sugar_for_a_teacher_named_teacher_and_both_are_refused():
    teacher = dict(config='t.py', checkpoint='t.pth')
    assert named_teachers(teacher, None) == {'teacher': teacher}
    assert named_teachers(None, dict(a=teacher)) == {'a': teacher}
    assert named_teachers(None, None) == {}
    with pytest.raises(ValueError, match=r'teacher=dict\(\.\.\.\) or teachers=dict\(<name>='
                                         r'dict\(\.\.\.\), \.\.\.\), not both'):
        named_teachers(teacher, dict(a=teacher))
    with pytest.raises(ValueError, match='teachers must be a non-empty dict'):
        named_teachers(None, {})


def test_no_teacher_is_named_student(two_teachers):
    config, (first, _) = two_teachers
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match="no teacher can be named 'student'"):
            Distiller(student=tiny_classifier(4),
                      teachers=dict(student=dict(config=config, checkpoint=first)))


FEA_TEACHER = dict(FEA_A, inputs=dict(student_feature='student.backbone.layer2',
                                      teacher_feature='teacher.backbone.layer2'))
KD_TEACHER = dict(type='HintonKDLoss', tau=2.0, inputs=dict(
    student_logits='student.head.fc', teacher_logits='teachers.teacher.head.fc'))


def test_teacher_and_teachers_with_a_teacher_named_teacher_build_the_same_distiller(
        two_teachers):
    config, (first, _) = two_teachers
    teacher = dict(config=config, checkpoint=first)
    built = []
    for given in (dict(teacher=teacher), dict(teachers=dict(teacher=teacher))):
        torch.manual_seed(0)  # the same student and align layer
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            built.append(Distiller(student=tiny_classifier(4), save_teacher=True,
                                   distill_losses=dict(fea=FEA_TEACHER, kd=KD_TEACHER),
                                   **given))
    single, named = built
    assert list(single.teachers) == list(named.teachers) == ['teacher']
    assert named.teacher is named.teachers['teacher'].model
    state = single.state_dict()
    assert list(state) == list(named.state_dict())
    assert len([k for k in state if k.startswith('teacher.')]) == \
        len(single.teacher.state_dict())
    torch.testing.assert_close(state, named.state_dict())
    assert named.loss_inputs['kd']['teacher_logits'] == Tap('teacher', 'head.fc')
    assert str(named.loss_inputs['kd']['teacher_logits']) == 'teacher.head.fc'
    inputs, samples = classification_batch()
    losses = [distiller(inputs, samples, mode='loss') for distiller in built]
    assert set(losses[0]) == set(losses[1]) == {'loss_student', 'loss_fea', 'loss_kd',
                                                'teacher_time'}
    for key in ('loss_student', 'loss_fea', 'loss_kd'):
        assert losses[0][key].item() > 0
        assert losses[0][key].item() == losses[1][key].item(), key


def test_saved_weights_of_a_teacher_the_distiller_lacks_are_unexpected_keys(two_teachers):
    """With save_teacher=True a checkpoint's teacher weights are loaded; those of a teacher the
    distiller does not have are reported as unexpected (a strict load fails naming them),
    never dropped silently."""
    state = {k: v.clone() for k, v in build(two_teachers, save_teacher=True).state_dict().items()}
    extra = {k.replace('teachers.a.', 'teachers.c.'): v + 1 for k, v in state.items()
             if k.startswith('teachers.a.')}
    assert len(extra) == len(models(build(two_teachers))[0].state_dict())
    distiller = build(two_teachers, save_teacher=True)
    result = distiller.load_state_dict({**state, **extra}, strict=False)
    assert not result.missing_keys
    assert sorted(result.unexpected_keys) == sorted(extra)
    for name, model in zip('ab', models(distiller)):  # the teachers it has are loaded
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[f'teachers.{name}.{key}']), key
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: '
                                           r'.*"teachers\.c\.head\.fc\.bias"'):
        build(two_teachers, save_teacher=True).load_state_dict({**state, **extra}, strict=True)

    # A key inside a teacher it has but not in that teacher's model: unexpected, named in full.
    stray = {'teachers.b.head.fc.extra': torch.zeros(1)}
    result = build(two_teachers, save_teacher=True).load_state_dict({**state, **stray},
                                                                    strict=False)
    assert result.unexpected_keys == list(stray) and not result.missing_keys

    # A single teacher (teacher=) reading a checkpoint of named teachers: none of it is its.
    config, (first, _) = two_teachers
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        single = Distiller(student=tiny_classifier(4), save_teacher=True,
                           teacher=dict(config=config, checkpoint=first),
                           distill_losses=dict(kd=dict(KD_MEAN, inputs=dict(
                               student_logits='student.head.fc',
                               teacher_logits='teacher.head.fc'))))
    result = single.load_state_dict(state, strict=False)
    assert sorted(result.unexpected_keys) == sorted(k for k in state
                                                    if k.startswith('teachers.'))
    # Its own weights are all missing (torch's BatchNorm fills in num_batches_tracked).
    assert sorted(result.missing_keys) == sorted(
        f'teacher.{k}' for k in single.teacher.state_dict()
        if not k.endswith('num_batches_tracked'))


def test_a_teacher_checkpoint_that_is_a_bare_state_dict_loads(tmp_path, teacher_files):
    """Checkpoints published as a plain ``state_dict`` (no ``'state_dict'`` key, no meta) are
    the teacher's weights as they are."""
    config, checkpoint = teacher_files
    weights = torch.load(checkpoint, map_location='cpu')['state_dict']
    bare = str(tmp_path / 'bare.pth')
    torch.save(weights, bare)
    kd = dict(type='HintonKDLoss', tau=2.0, inputs=dict(student_logits='student.head.fc',
                                                        teacher_logits='teacher.head.fc'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(student=tiny_classifier(4), distill_losses=dict(kd=kd),
                              teacher=dict(config=config, checkpoint=bare))
    loaded = distiller.teacher.state_dict()
    assert sorted(loaded) == sorted(weights)
    assert all(torch.equal(loaded[key], value) for key, value in weights.items())
