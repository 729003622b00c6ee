"""What the tap check (``tools/analysis/print_taps.py``, ``check_taps``) and the losses say when a
loss's inputs do not fit, on tiny real mmseg segmentors and mmpretrain classifiers: advice by
what the loss reads (logits: classes, one output stride, the teacher's ``input_size``; features:
channels and stride), train-only taps noted rather than failed, and each shape error naming
what differs."""
import os.path as osp

import pytest
from mmengine.registry import DefaultScope

from conftest import script_module, tiny_classifier, write_config
from mmdistill.apis import build_distiller, synthetic_batch
from mmdistill.distillers import Distiller
from mmdistill.distillers.tap_check import dry_run, format_report

SIZE = 64


def tiny_segmentor(width: int) -> dict:
    """A real mmseg FCN on a dilated ResNet-18 (output stride 8) with an auxiliary head on its
    third stage, 3 classes."""
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(SIZE, SIZE)),
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=2 * width, base_channels=width,
                      out_indices=(2, 3), strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
        decode_head=dict(type='FCNHead', in_channels=8 * width, channels=8, num_convs=1,
                         in_index=1, num_classes=3, loss_decode=dict(type='CrossEntropyLoss')),
        auxiliary_head=dict(type='FCNHead', in_channels=4 * width, channels=8, num_convs=1,
                            in_index=0, num_classes=3,
                            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)))


def kd(student: str, teacher: str) -> dict:
    return dict(type='HintonKDLoss', inputs=dict(student_logits=student, teacher_logits=teacher))


PIXEL_KD = kd('student.decode_head.conv_seg', 'teacher.decode_head.conv_seg')


def seg_config(tmp_path, losses: dict, **teacher) -> str:
    """A distillation config file: a width-4 segmentor student, a width-8 teacher."""
    teacher_cfg = write_config(osp.join(tmp_path, 'seg_teacher.py'), default_scope='mmseg',
                               model=tiny_segmentor(8))
    return write_config(osp.join(tmp_path, 'seg_kd.py'), default_scope='mmseg', model=dict(
        type='mmdistill.Distiller', student=tiny_segmentor(4), distill_losses=losses,
        teacher=dict(config=teacher_cfg, checkpoint=None, **teacher)))


def print_taps(config: str, capsys, *size) -> tuple:
    """``print_taps.py CONFIG --input-size H W``: its exit status and the losses section."""
    tool = script_module('tools/analysis/print_taps.py', 'print_taps')
    status = tool.main([config, '--input-size', *map(str, size or (SIZE, SIZE))])
    out = capsys.readouterr().out
    return status, out[out.index('\nlosses:'):]


def test_logits_of_a_teacher_at_its_own_input_size_name_the_sizes_and_input_size(tmp_path,
                                                                                   capsys):
    config = seg_config(tmp_path, dict(kd=PIXEL_KD), inputs='own', input_size=(32, 32))
    status, out = print_taps(config, capsys)
    assert status == 1
    assert ("PROBLEM distillation loss 'kd' (HintonKDLoss): its N×C×H×W inputs differ in "
            'spatial size: student_logits=student.decode_head.conv_seg 2×3×8×8, teacher_logits='
            "teacher.decode_head.conv_seg 2×3×4×4. teacher sees 32×32 inputs (its input_size, "
            "with inputs='own'), the student 64×64. Logits are compared position by position: "
            "give teacher the student's input size (input_size=(64, 64)) or no input_size"
            ) in out
    # No backbone modules of the logits' size: logits come from the classification layer.
    assert 'modules of output size' not in out and 'backbone' not in out
    assert ('student.decode_head.conv_seg (2×3×8×8, logits):\n'
            '    teacher: none: it predicts other classes, or at another size') in out


def test_in_training_the_loss_says_the_sizes_differ_not_the_classes(tmp_path):
    config = seg_config(tmp_path, dict(kd=PIXEL_KD), inputs='own', input_size=(32, 32))
    distiller = build_distiller(config)[0]
    data = distiller.data_preprocessor(
        synthetic_batch(distiller.student, 'mmseg', 2, (SIZE, SIZE)), True)
    with pytest.raises(ValueError) as error:
        distiller(**data, mode='loss')
    message = str(error.value)
    assert ('HintonKDLoss logits: student (2, 3, 8, 8) and teacher (2, 3, 4, 4) differ in '
            'spatial size (8×8 vs 4×4). Logits are compared position by position') in message
    assert "inputs='own'" in message and 'input_size' in message
    assert 'classes' not in message


def test_logits_of_heads_at_different_strides_name_the_strides(tmp_path, capsys):
    # A student whose last stage strides once more predicts at 16, the teacher at 8.
    config = seg_config(tmp_path, dict(kd=PIXEL_KD))
    options = ['--cfg-options', 'model.student.backbone.strides=(1,2,2,1)']
    tool = script_module('tools/analysis/print_taps.py', 'print_taps')
    status = tool.main([config, '--input-size', str(SIZE), str(SIZE), *options])
    out = capsys.readouterr().out
    assert status == 1
    assert ('2×3×4×4, teacher_logits=teacher.decode_head.conv_seg 2×3×8×8. Logits are compared '
            'position by position, so both heads must predict at one output stride (student.'
            'decode_head.conv_seg stride 16, teacher.decode_head.conv_seg stride 8): tap each '
            "model's final classification layer, at the same stride") in out


def classifier_config(tmp_path, losses: dict, teacher_classes: int = 5) -> str:
    teacher_cfg = write_config(osp.join(tmp_path, 'cls_teacher.py'), default_scope='mmpretrain',
                               model=tiny_classifier(8, num_classes=teacher_classes))
    return write_config(osp.join(tmp_path, 'cls_kd.py'), default_scope='mmpretrain', model=dict(
        type='mmdistill.Distiller', student=tiny_classifier(4), distill_losses=losses,
        teacher=dict(config=teacher_cfg, checkpoint=None)))


def test_logits_of_other_classes_are_told_by_their_class_count(tmp_path, capsys):
    config = classifier_config(tmp_path, dict(kd=kd('student.head.fc', 'teacher.head.fc')),
                               teacher_classes=7)
    status, out = print_taps(config, capsys, 16, 16)
    assert status == 1
    assert ('HintonKDLoss logits: student (2, 5) and teacher (2, 7) differ in classes (5 vs 7). '
            "Student and teacher must predict the same classes: tap each model's final "
            'classification layer (its conv or fc), both heads with one num_classes.') in out
    assert 'modules of output size' not in out
    assert 'student.head.fc (2×5, logits):\n    teacher: none' in out
    fitting = classifier_config(tmp_path, dict(kd=kd('student.head.fc', 'teacher.head.fc')))
    status, out = print_taps(fitting, capsys, 16, 16)
    assert status == 0 and 'student.head.fc (2×5, logits):\n    teacher: head, head.fc\n' in out


def test_features_of_other_channels_are_told_the_modules_of_those_channels(tmp_path, capsys):
    # The width-4 student's layer2 gives 8 channels at 8×8 (stride 2); its layer3 16 at 4×4.
    fea = dict(type='FeatureMSELoss', student_channels=16, teacher_channels=16,
               inputs=dict(student_feature='student.backbone.layer2',
                           teacher_feature='teacher.backbone.layer2'))
    status, out = print_taps(classifier_config(tmp_path, dict(fea=fea)), capsys, 16, 16)
    assert status == 1
    assert ("'fea' (FeatureMSELoss): student_feature=student.backbone.layer2 has 8 channels "
            '(2×8×8×8), the loss was built with student_channels=16: set it to 8, or tap a '
            'module of 16 channels (student: backbone.layer3 (4×4, stride 4)') in out


def test_a_train_only_student_tap_is_a_note_and_a_teacher_one_a_problem(tmp_path, capsys):
    aux = kd('student.auxiliary_head.conv_seg', 'teacher.decode_head.conv_seg')
    status, out = print_taps(seg_config(tmp_path, dict(kd=PIXEL_KD, aux=aux)), capsys)
    assert status == 0
    assert "every loss's inputs fit (train-only taps aside)" in out
    assert ('note: student.auxiliary_head.conv_seg (aux.student_logits) is train-only: the '
            'student runs it in training (loss mode), not in the dry forward (tensor mode), so '
            'that loss is not checked here') in out
    teacher_aux = kd('student.decode_head.conv_seg', 'teacher.auxiliary_head.conv_seg')
    status, out = print_taps(seg_config(tmp_path, dict(aux=teacher_aux)), capsys)
    assert status == 1
    assert ("PROBLEM distillation loss 'aux' (HintonKDLoss): tap teacher.auxiliary_head."
            'conv_seg recorded nothing: teachers run in tensor mode, in training too') in out


def test_check_taps_at_build_time_passes_a_train_only_tap(tmp_path):
    aux = kd('student.auxiliary_head.conv_seg', 'teacher.decode_head.conv_seg')
    config = seg_config(tmp_path, dict(aux=aux))
    distiller = build_distiller(config, {'model.check_taps': (SIZE, SIZE)})[0]
    report = dry_run(distiller, (SIZE, SIZE))
    assert report.problems == [] and [str(t) for t in report.train_only] == [
        'student.auxiliary_head.conv_seg']
    assert 'train-only' in format_report(report)


def test_a_student_tap_that_never_runs_is_a_problem(teacher_files):
    # The data preprocessor runs before the student's forward, in training as here.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(
            student=tiny_classifier(4), teacher=dict(config=teacher_files[0],
                                                     checkpoint=teacher_files[1]),
            distill_losses=dict(kd=kd('student.data_preprocessor', 'teacher.head.fc')))
    report = dry_run(distiller, (16, 16))
    assert report.train_only == []
    assert report.problems == [
        "distillation loss 'kd' (HintonKDLoss): tap student.data_preprocessor recorded "
        'nothing: the student calls that module neither in the dry forward (tensor mode) nor '
        'in training (loss mode, unless the notes say it could not run): a module off the path '
        'from input to output']
