"""A teacher with its own inputs (``inputs='own'``, ``input_size``) and the tap check
(``Distiller(check_taps=...)``, ``tools/analysis/print_taps.py``) on real mmpretrain models
and the digits configs."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmengine.registry import DefaultScope
from mmpretrain.models import ClsDataPreprocessor
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample

from conftest import script_module, tiny_classifier, write_config
from mmdistill.distillers import Distiller
from mmdistill.distillers.input_preparation import TeacherInputs
from mmdistill.distillers.tap_check import dry_run
from mmdistill.losses import HintonKDLoss

KD = dict(type='HintonKDLoss', inputs=dict(student_logits='student.head.fc',
                                           teacher_logits='teacher.head.fc'))
STUDENT_PRE = dict(type='ClsDataPreprocessor', mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 8.0],
                   to_rgb=False)
TEACHER_PRE = dict(type='ClsDataPreprocessor', mean=[1.0, 2.0, 3.0], std=[1.0, 1.0, 2.0],
                   to_rgb=True)


def test_own_inputs_undo_the_student_apply_the_teacher_and_resize_by_hand():
    student = ClsDataPreprocessor(**{k: v for k, v in STUDENT_PRE.items() if k != 'type'})
    teacher = ClsDataPreprocessor(**{k: v for k, v in TEACHER_PRE.items() if k != 'type'})
    own = TeacherInputs('own', (4, 4), student, teacher, 'teacher')
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (1, 3, 2, 2)).float()
    mean, std = torch.tensor([10.0, 20.0, 30.0]), torch.tensor([2.0, 4.0, 8.0])
    prepared = (pixels - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    # Bilinear 2 -> 4 with align_corners=False samples at source positions -0.25, 0.25, 0.75,
    # 1.25 (clamped at the borders): each output row/column is one row of M.
    m = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    rgb = pixels.flip(1)[0]
    expected = torch.stack([(m @ rgb[c] @ m.T - [1.0, 2.0, 3.0][c]) / [1.0, 1.0, 2.0][c]
                            for c in range(3)])
    torch.testing.assert_close(own(prepared)[0], expected, rtol=0, atol=1e-5)
    same_size = TeacherInputs('own', None, student, teacher, 'teacher')(prepared)
    assert same_size.shape == prepared.shape
    unchanged = TeacherInputs('student', None, student, teacher, 'teacher')(prepared)
    assert unchanged is prepared


def teacher_config(tmp_path, data_preprocessor) -> str:
    return write_config(osp.join(tmp_path, 'own_teacher.py'), default_scope='mmpretrain',
                        model=dict(tiny_classifier(8), data_preprocessor=data_preprocessor))


def distiller_with(tmp_path, teacher_files, losses, check_taps=False, **teacher):
    _, checkpoint = teacher_files
    config = teacher_config(tmp_path, TEACHER_PRE)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Distiller(student=dict(tiny_classifier(4), data_preprocessor=STUDENT_PRE),
                         teacher=dict(config=config, checkpoint=checkpoint, **teacher),
                         distill_losses=losses, check_taps=check_taps)


def test_a_resized_teacher_sees_its_own_preparation_of_the_resized_images(tmp_path,
                                                                          teacher_files):
    distiller = distiller_with(tmp_path, teacher_files, dict(kd=KD), inputs='own',
                               input_size=(8, 8))
    torch.manual_seed(0)
    images = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    data = distiller.data_preprocessor(dict(inputs=list(images), data_samples=samples), True)
    losses = distiller(**data, mode='loss')
    # Resize the raw images first, then let the teacher's own preprocessor prepare them.
    small = [F.interpolate(img[None].float(), size=(8, 8), mode='bilinear',
                           align_corners=False)[0] for img in images]
    teacher_pre = distiller.teacher.data_preprocessor
    with torch.no_grad():
        teacher_inputs = teacher_pre(dict(inputs=small), False)['inputs']
        assert teacher_inputs.shape == (2, 3, 8, 8)
        expected = HintonKDLoss()(distiller.student(data['inputs'], mode='tensor'),
                                  distiller.teacher(teacher_inputs, mode='tensor'))
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-4)


@MMPRETRAIN_MODELS.register_module(force=True)
class CastingOnlyPreprocessor(BaseDataPreprocessor):
    """A user's own preprocessor: stacks and casts, with no colour order, mean or std to read.
    (mmpretrain's ImageClassifier hands every preprocessor its ``batch_augments``.)"""

    def __init__(self, batch_augments=None):
        super().__init__()


def test_own_inputs_need_invertible_preprocessors_and_input_size_needs_own(tmp_path,
                                                                           teacher_files):
    _, checkpoint = teacher_files
    plain = teacher_config(tmp_path, dict(type='CastingOnlyPreprocessor'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match="teacher.inputs='own' needs to undo.*"
                                             'CastingOnlyPreprocessor is not an image data '
                                             'preprocessor.*inverted'):
            Distiller(student=tiny_classifier(4), distill_losses=dict(kd=KD),
                      teacher=dict(config=plain, checkpoint=checkpoint, inputs='own'))
    with pytest.raises(ValueError, match="teacher.input_size=\\(8, 8\\) needs inputs='own'"):
        distiller_with(tmp_path, teacher_files, dict(kd=KD), input_size=(8, 8))
    with pytest.raises(ValueError, match="teacher.inputs must be one of"):
        distiller_with(tmp_path, teacher_files, dict(kd=KD), inputs='teacher')


FEA = dict(type='FeatureMSELoss', student_channels=8, teacher_channels=16,
           inputs=dict(student_feature='student.backbone.layer2',
                       teacher_feature='teacher.backbone.layer2'))


def test_a_loss_on_maps_of_a_resized_teacher_names_the_sizes(tmp_path, teacher_files):
    # Its maps are half the student's size at the same depth: the loss says so, the
    # distiller names the loss and its taps.
    mgd = dict(type='MGDLoss', student_channels=8, teacher_channels=16, loss_weight=1.0,
               mask_ratio=0.5,
               inputs=dict(student_feature='student.backbone.layer2',
                           teacher_feature='teacher.backbone.layer2'))
    distiller = distiller_with(tmp_path, teacher_files, dict(mgd=mgd), inputs='own',
                               input_size=(8, 8))
    images = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    data = distiller.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    with pytest.raises(ValueError, match="distillation loss 'mgd' \\(student_feature=student"
                                         '.backbone.layer2, teacher_feature=teacher.backbone.'
                                         'layer2\\): MGDLoss features \\(after align\\): '
                                         'student \\(2, 16, 8, 8\\) and teacher \\(2, 16, 4, '
                                         '4\\) differ in spatial size \\(8×8 vs 4×4\\). Tap '
                                         'modules with the same spatial size \\(stride\\). A '
                                         "teacher with its own inputs \\(inputs='own'\\) and "
                                         'an input_size other than'):
        distiller(**data, mode='loss')


def test_check_taps_catches_a_channel_mismatch_at_build_time(teacher_files):
    from test_distiller import build
    wrong = dict(FEA, student_channels=16)  # student layer2 has 8 channels
    build(teacher_files, dict(fea=wrong))  # without the check, building succeeds
    with pytest.raises(ValueError, match="(?s)check_taps found 1 problem.*2×3×16×16.*'fea' "
                                         '\\(FeatureMSELoss\\): student_feature=student.backbone'
                                         '.layer2 has 8 channels \\(2×8×8×8\\), the loss was '
                                         'built with student_channels=16'):
        build(teacher_files, dict(fea=wrong), check_taps=(16, 16))
    fitting = build(teacher_files, dict(fea=FEA), check_taps=(16, 16))  # a fitting config
    rng = torch.get_rng_state()
    assert dry_run(fitting, (16, 16)).problems == []
    assert torch.equal(torch.get_rng_state(), rng)  # the check leaves training's randomness


def test_check_taps_names_same_size_teacher_modules_for_a_resized_teacher(tmp_path,
                                                                          teacher_files):
    # The teacher sees 8×8 where the student sees 16×16: its layer2 is 4×4, the student's
    # 8×8, as is the teacher's layer1 (8 channels at width 8).
    with pytest.raises(ValueError, match="(?s)N×C×H×W inputs differ in spatial size: student_"
                                         'feature=student.backbone.layer2 2×8×8×8, teacher_'
                                         'feature=teacher.backbone.layer2 2×16×4×4. teacher '
                                         'sees 8×8 inputs \\(its input_size, with inputs=\''
                                         "own'\\), the student 16×16: at one stride its maps "
                                         'have other sizes.*teacher '
                                         'modules of output size 8×8 \\(that of student.backbone'
                                         '.layer2\\): .*backbone.layer1 \\(8 ch\\)'):
        distiller_with(tmp_path, teacher_files, dict(fea=FEA), inputs='own',
                       input_size=(8, 8), check_taps=(16, 16))


def test_print_taps_shows_shapes_and_marks_the_taps_of_a_digits_config(capsys):
    print_taps = script_module('tools/analysis/print_taps.py', 'print_taps')
    status = print_taps.main(['benchmarks/digits/configs/kd_resnet18_w4_from_two_resnet18.py',
                              '--input-size', '32', '32'])
    out = capsys.readouterr().out
    assert status == 0
    assert 'teachers.b (ImageClassifier), input 2×3×32×32:' in out
    lines = [line.split() for line in out.splitlines()]
    # The width-16 teacher's second stage halves 32×32 and doubles 16 channels.
    assert ['backbone.layer2', '2×32×16×16', 'stride', '2'] in lines
    assert ['backbone.layer2', '2×8×16×16', 'stride', '2'] in lines  # the width-4 student
    assert ['head.fc', '2×10', '<==', 'teachers.a.head.fc:', 'kd.teacher_logits'] in lines
    assert "every loss's inputs fit" in out
