"""Taps on modules that return tuples or lists: a clear error naming the tap and what it gave,
and ``[i]`` to pick an element."""
import re

import pytest
import torch

from conftest import classification_batch
from mmdistill.distillers import ModuleTaps, Tap, TapMean
from mmdistill.distillers.taps import parse_loss_input
from mmdistill.losses import FeatureMSELoss
from test_distiller import build


def feature_loss(student: str, teacher: str) -> dict:
    return dict(fea=dict(type='FeatureMSELoss', student_channels=32, teacher_channels=64,
                         inputs=dict(student_feature=student, teacher_feature=teacher)))


def test_tap_on_a_backbone_tuple_names_the_tap_and_how_to_pick(teacher_files):
    distiller = build(teacher_files, feature_loss('student.backbone', 'teacher.backbone[0]'))
    with pytest.raises(TypeError, match=(
            "distillation loss 'fea' \\(FeatureMSELoss\\) takes a tensor as 'student_feature', "
            "but tap 'student.backbone' gives a tuple of 1 \\(\\[0\\] tensor \\(4, 32, 2, 2\\)\\)"
            ".*Pick one with an index: 'student.backbone\\[0\\]' is the last")):
        distiller(*classification_batch(), mode='loss')


def test_indexed_taps_feed_the_loss_the_picked_element(teacher_files):
    distiller = build(teacher_files, feature_loss('student.backbone[0]', 'teacher.backbone[-1]'))
    inputs, samples = classification_batch()
    losses = distiller(inputs, samples, mode='loss')
    loss = distiller.distill_losses['fea']
    with torch.no_grad():
        expected = FeatureMSELoss(32, 64)
        expected.load_state_dict(loss.state_dict())
        value = expected(distiller.student.backbone(inputs)[0],
                         distiller.teacher.backbone(inputs)[-1])
    assert losses['loss_fea'].item() == pytest.approx(value.item(), rel=1e-5)


def test_index_picks_a_call_of_a_module_run_several_times_and_checks_range():
    shared = torch.nn.Linear(2, 2)
    model = torch.nn.ModuleDict(dict(shared=shared))
    second, third = Tap.parse('teacher.shared[1]'), Tap.parse('teacher.shared:input[-1]')
    assert second == Tap('teacher', 'shared', 'output', (1, ))
    assert third == Tap('teacher', 'shared', 'input', (-1, ))
    assert Tap.parse('student.neck:input[2][-1]') == Tap('student', 'neck', 'input', (2, -1))
    assert str(Tap.parse('student.neck:input[2][-1]')) == 'student.neck:input[2][-1]'
    taps = ModuleTaps(model, [second, third], 'teacher')
    x = torch.ones(1, 2)
    records = taps.record(lambda: shared(shared(x)))
    torch.testing.assert_close(records[second], shared(shared(x)))
    torch.testing.assert_close(records[third], shared(x))  # the second call's input
    once = ModuleTaps(model, [second], 'teacher')
    with pytest.raises(IndexError, match="tap 'teacher.shared\\[1\\]': 'teacher.shared' gives "
                                         'a tensor of shape \\(1, 2\\), which has no element'):
        once.record(lambda: shared(x))


def test_index_before_the_port_is_refused_with_the_right_order():
    with pytest.raises(ValueError, match="indices go last.*'student.neck:input\\[0\\]'"):
        Tap.parse('student.backbone[3]:input')


@pytest.mark.parametrize('spec, tap', [
    ('student.backbone[3]', Tap('student', 'backbone', 'output', (3, ))),
    ('student.neck.fpn_convs.0.conv', Tap('student', 'neck.fpn_convs.0.conv', 'output', ())),
    ('teacher.neck:input[2]', Tap('teacher', 'neck', 'input', (2, ))),
    ('teacher.head.fc:input', Tap('teacher', 'head.fc', 'input', ())),
    ('teachers.a.head.fc', Tap('a', 'head.fc', 'output', ())),
    ('teachers.det.bbox_head.retina_cls[0][-1]',
     Tap('det', 'bbox_head.retina_cls', 'output', (0, -1))),
])
def test_a_tap_is_parsed_once_into_its_owner_module_port_and_index(spec, tap):
    parsed = parse_loss_input(spec)
    assert parsed == tap
    assert (parsed.owner, parsed.path, parsed.port, parsed.index) == tuple(tap)
    assert str(parsed) == spec
    assert parsed.taps == (tap, )


def test_a_teacher_named_teacher_is_written_teacher_and_a_mean_holds_parsed_taps():
    assert Tap.parse('teachers.teacher.neck[1]') == Tap('teacher', 'neck', 'output', (1, ))
    assert str(Tap.parse('teachers.teacher.neck[1]')) == 'teacher.neck[1]'
    mean = parse_loss_input(dict(mean=['teachers.a.head.fc', 'teacher.neck:input[0]']))
    assert mean == TapMean((Tap('a', 'head.fc'), Tap('teacher', 'neck', 'input', (0, ))))
    assert str(mean) == 'mean(teachers.a.head.fc, teacher.neck:input[0])'


@pytest.mark.parametrize('spec', ['teachers.a', 'teachers.student.neck', 'model.neck',
                                  'student', 'teachers..neck'])
def test_a_tap_without_a_known_owner_or_module_is_refused(spec):
    with pytest.raises(ValueError, match=f"tap '{re.escape(spec)}' must look like "
                                         r"'student.<module path>'"):
        Tap.parse(spec)
