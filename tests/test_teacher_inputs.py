"""A teacher whose data preprocessor differs from the student's (colour order, mean, std) gets
the batch its own preprocessor would have prepared, whatever the codebases of the two."""
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.structures import BaseDataElement

from conftest import classification_batch, tiny_classifier
from mmdistill.distillers import Distiller
from mmdistill.distillers.input_preparation import preparation_of, reprepare, same_preparation
from mmdistill.losses import HintonKDLoss

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
OTHER_MEAN, OTHER_STD = [127.5, 127.5, 127.5], [64.0, 32.0, 16.0]


def preprocessor(codebase: str, swap: bool, mean=MEAN, std=STD):
    """The codebase's own image data preprocessor with its own name for the colour switch."""
    if codebase == 'mmpretrain':
        from mmpretrain.models import ClsDataPreprocessor
        return ClsDataPreprocessor(mean=mean, std=std, to_rgb=swap)
    if codebase == 'mmseg':
        from mmseg.models import SegDataPreProcessor
        return SegDataPreProcessor(mean=mean, std=std, bgr_to_rgb=swap)
    if codebase == 'mmdet':
        from mmdet.models import DetDataPreprocessor
        return DetDataPreprocessor(mean=mean, std=std, bgr_to_rgb=swap)
    from mmpose.models import PoseDataPreprocessor
    return PoseDataPreprocessor(mean=mean, std=std, bgr_to_rgb=swap)


def prepared(pre, images):
    samples = [BaseDataElement() for _ in images]  # mmpose writes their input shapes
    return pre(dict(inputs=[img.clone() for img in images], data_samples=samples),
               False)['inputs']


CODEBASES = ('mmpretrain', 'mmseg', 'mmdet', 'mmpose')


@pytest.mark.parametrize('codebase', CODEBASES)
def test_every_codebase_colour_switch_and_statistics_are_read(codebase):
    swapping = preparation_of(preprocessor(codebase, True))
    assert swapping.swaps_channels is True
    assert swapping.mean.flatten().tolist() == pytest.approx(MEAN)
    assert swapping.std.flatten().tolist() == pytest.approx(STD)
    assert preparation_of(preprocessor(codebase, False)).swaps_channels is False
    assert not same_preparation(swapping, preparation_of(preprocessor(codebase, False)))
    assert same_preparation(swapping, preparation_of(preprocessor('mmpretrain', True)))


@pytest.mark.parametrize('student,teacher', [('mmseg', 'mmpretrain'), ('mmpretrain', 'mmdet'),
                                             ('mmdet', 'mmseg'), ('mmpose', 'mmpose')])
def test_reprepared_batch_is_what_the_teacher_preprocessor_makes(student, teacher):
    torch.manual_seed(0)
    images = [torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8) for _ in range(2)]
    mine = preprocessor(student, True)
    theirs = preprocessor(teacher, False, OTHER_MEAN, OTHER_STD)
    converted = reprepare(prepared(mine, images), preparation_of(mine), preparation_of(theirs))
    torch.testing.assert_close(converted, prepared(theirs, images), rtol=0, atol=1e-4)


def test_distiller_gives_the_teacher_its_own_preparation(teacher_files):
    config, checkpoint = teacher_files
    teacher_pre = dict(type='ClsDataPreprocessor', mean=OTHER_MEAN, std=OTHER_STD, to_rgb=False)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(
            student=dict(tiny_classifier(4), data_preprocessor=dict(
                type='ClsDataPreprocessor', mean=MEAN, std=STD, to_rgb=True)),
            teacher=dict(config=config, checkpoint=checkpoint,
                         cfg_options={'model.data_preprocessor': teacher_pre}),
            distill_losses=dict(kd=dict(type='HintonKDLoss', inputs=dict(
                student_logits='student.head.fc', teacher_logits='teacher.head.fc'))))
    _, samples = classification_batch()
    torch.manual_seed(0)
    images = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8) for _ in samples]
    data = distiller.data_preprocessor(dict(inputs=list(images), data_samples=samples), True)
    losses = distiller(**data, mode='loss')
    with torch.no_grad():
        teacher_logits = distiller.teacher(prepared(distiller.teacher.data_preprocessor, images),
                                           mode='tensor')
        expected = HintonKDLoss()(distiller.student(data['inputs'], mode='tensor'),
                                  teacher_logits)
        unconverted = HintonKDLoss()(distiller.student(data['inputs'], mode='tensor'),
                                     distiller.teacher(data['inputs'], mode='tensor'))
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-4)
    assert abs(unconverted.item() - expected.item()) > 1e-3  # the conversion mattered


def test_preparations_are_the_same_only_when_colour_order_mean_and_std_all_are():
    def prep(swap=True, mean=MEAN, std=STD):
        return preparation_of(preprocessor('mmpretrain', swap, mean, std))

    other_std = [58.395, 57.12, 57.0]  # one channel's std differs
    other_mean = [123.675, 116.0, 103.53]  # one channel's mean differs
    assert same_preparation(prep(), prep())  # two preprocessors, equal settings
    assert not same_preparation(prep(), prep(std=other_std))
    assert not same_preparation(prep(std=other_std), prep())
    assert not same_preparation(prep(), prep(mean=other_mean))
    assert not same_preparation(prep(mean=other_mean), prep())
    assert not same_preparation(prep(swap=True), prep(swap=False))
    unnormalised = preparation_of(preprocessor('mmpretrain', True, None, None))
    assert unnormalised.mean is None and unnormalised.std is None
    assert same_preparation(unnormalised, preparation_of(preprocessor('mmpretrain', True,
                                                                      None, None)))
    assert not same_preparation(unnormalised, prep())
    assert not same_preparation(prep(), unnormalised)


def test_a_teacher_whose_std_alone_differs_gets_its_own_std(teacher_files):
    """Only the std differs: the teacher's batch is the student's times std_s / std_t."""
    config, checkpoint = teacher_files
    teacher_std = [29.0, 57.12, 114.0]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(
            student=dict(tiny_classifier(4), data_preprocessor=dict(
                type='ClsDataPreprocessor', mean=MEAN, std=STD, to_rgb=True)),
            teacher=dict(config=config, checkpoint=checkpoint, cfg_options={
                'model.data_preprocessor': dict(type='ClsDataPreprocessor', mean=MEAN,
                                                std=teacher_std, to_rgb=True)}),
            distill_losses=dict(kd=dict(type='HintonKDLoss', inputs=dict(
                student_logits='student.head.fc', teacher_logits='teacher.head.fc'))))
    inputs = distiller.teachers['teacher'].inputs
    assert inputs.converts
    student_batch = torch.ones(1, 3, 2, 2)
    expected = torch.tensor([STD[0] / 29.0, 1.0, STD[2] / 114.0]).view(1, 3, 1, 1).expand(
        1, 3, 2, 2)
    torch.testing.assert_close(inputs(student_batch), expected, rtol=1e-6, atol=1e-6)
