"""The distiller under autocast, with a half-precision teacher, with a loss switched off, and
the teacher's logged time (real mmpretrain models; the multi-process runs are in
tests/e2e/test_distributed_e2e.py)."""
import time
import warnings
from collections import namedtuple

import pytest
import torch
from mmengine.registry import DefaultScope

from conftest import classification_batch, tiny_classifier
from mmdistill.distillers import Distiller
from mmdistill.distillers.precision import float32_copies
from mmdistill.losses import HintonKDLoss

KD = dict(type='HintonKDLoss', tau=2.0,
          inputs=dict(student_logits='student.head.fc', teacher_logits='teacher.head.fc'))
# Student layer2 (8 channels, 8×8) against teacher layer2 (16 channels, 8×8), aligned by a conv.
FEA = dict(type='FeatureMSELoss', student_channels=8, teacher_channels=16,
           inputs=dict(student_feature='student.backbone.layer2',
                       teacher_feature='teacher.backbone.layer2'))


def cpu_autocast_supports(dtype: torch.dtype) -> bool:
    """Whether this torch autocasts to ``dtype`` on CPU (it warns and disables autocast where
    not: torch 2.0 does only bfloat16)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.autocast('cpu', dtype=dtype)
    return not caught


def cpu_autocast_enabled() -> bool:
    """Whether autocast is on for CPU (torch 2.0 has no device argument for it)."""
    try:
        return torch.is_autocast_enabled('cpu')
    except TypeError:
        return torch.is_autocast_cpu_enabled()


needs_cpu_float16_autocast = pytest.mark.skipif(
    not cpu_autocast_supports(torch.float16),
    reason='this torch has no float16 autocast on CPU (torch 2.0 autocasts CPUs to bfloat16 only)')


def build(teacher_files, losses, **teacher_options):
    config, checkpoint = teacher_files
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Distiller(student=tiny_classifier(4),
                         teacher=dict(config=config, checkpoint=checkpoint, **teacher_options),
                         distill_losses=losses)


def record_loss_calls(distiller) -> dict:
    """``name -> (kwargs, autocast on?)`` of each distillation loss's last call."""
    seen = {}
    for name, loss in distiller.distill_losses.items():
        loss.register_forward_pre_hook(
            lambda module, args, kwargs, name=name: seen.__setitem__(
                name, (kwargs, cpu_autocast_enabled())), with_kwargs=True)
    return seen


def record_outputs(module) -> list:
    """The outputs of each call of ``module`` from now on (seen before the taps' hooks, which
    stop the teacher once they have recorded)."""
    outputs = []
    module.register_forward_hook(lambda m, args, output: outputs.append(output), prepend=True)
    return outputs


def test_losses_compute_in_float32_from_copies_of_bf16_features(teacher_files):
    distiller = build(teacher_files, dict(kd=KD, fea=FEA))
    seen = record_loss_calls(distiller)
    student_fc = record_outputs(distiller.student.head.fc)
    teacher_fc = record_outputs(distiller.teacher.head.fc)
    inputs, samples = classification_batch()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = distiller(inputs, samples, mode='loss')
    # The networks ran in bfloat16; each loss got float32 copies, with autocast off.
    assert student_fc[0].dtype == teacher_fc[0].dtype == torch.bfloat16
    for name in ('kd', 'fea'):
        kwargs, autocast_on = seen[name]
        assert not autocast_on
        assert all(v.dtype == torch.float32 for v in kwargs.values()), name
        assert losses[f'loss_{name}'].dtype == torch.float32
    kd_args = seen['kd'][0]
    assert torch.equal(kd_args['student_logits'], student_fc[0].float())
    assert torch.equal(kd_args['teacher_logits'], teacher_fc[0].float())
    expected = HintonKDLoss(tau=2.0)(student_fc[0].float(), teacher_fc[0].float())
    assert losses['loss_kd'].item() == pytest.approx(expected.item(), rel=1e-6)
    # The gradient goes back through the bfloat16 student.
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grad = distiller.student.backbone.conv1.weight.grad
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().sum() > 0


@needs_cpu_float16_autocast
def test_sum_of_squares_beyond_float16_range_stays_finite_under_fp16_autocast(teacher_files):
    distiller = build(teacher_files, dict(fea=FEA))
    seen = record_loss_calls(distiller)
    inputs, samples = classification_batch()
    with torch.autocast('cpu', dtype=torch.float16):
        # The teacher's BN has its initial statistics: its features grow with the input.
        losses = distiller(300 * inputs, samples, mode='loss')
    student, teacher = seen['fea'][0]['student_feature'], seen['fea'][0]['teacher_feature']
    assert student.dtype == teacher.dtype == torch.float32
    with torch.no_grad():
        squared = (distiller.distill_losses.fea.align(student) - teacher)**2
    n = inputs.shape[0]
    assert torch.isinf(squared.half().sum())  # what float16 arithmetic would give
    expected = squared.sum() / n  # loss_weight 1, reduction 'batch'
    assert expected > 65504  # float16's largest value
    assert torch.isfinite(losses['loss_fea'])
    assert losses['loss_fea'].item() == pytest.approx(expected.item(), rel=1e-5)


def test_bf16_teacher_keeps_its_precision_and_losses_get_float32(teacher_files):
    reference = build(teacher_files, dict(kd=KD))
    distiller = build(teacher_files, dict(kd=KD), dtype='bfloat16')
    assert distiller.teachers['teacher'].dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in distiller.teacher.parameters())
    assert distiller.teacher.backbone.bn1.running_var.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in distiller.student.parameters())
    for key, value in reference.teacher.state_dict().items():  # the same teacher, rounded
        if value.is_floating_point():
            assert torch.equal(distiller.teacher.state_dict()[key], value.bfloat16()), key
    seen = record_loss_calls(distiller)
    teacher_fc = record_outputs(distiller.teacher.head.fc)
    inputs, samples = classification_batch()
    losses = distiller(inputs, samples, mode='loss')
    assert teacher_fc[0].dtype == torch.bfloat16
    kd_args = seen['kd'][0]
    assert kd_args['teacher_logits'].dtype == torch.float32
    assert torch.equal(kd_args['teacher_logits'], teacher_fc[0].float())
    # Close to the float32 teacher's logits, within bfloat16's precision.
    with torch.no_grad():
        float32_logits = reference.teacher(inputs, mode='tensor')
    torch.testing.assert_close(teacher_fc[0].float(), float32_logits, rtol=0.05, atol=0.05)
    assert not torch.equal(teacher_fc[0].float(), float32_logits)
    assert torch.isfinite(losses['loss_kd'])


@needs_cpu_float16_autocast
def test_outer_fp16_autocast_does_not_change_a_bf16_teacher(teacher_files):
    """An outer float16 autocast (AmpOptimWrapper's) leaves the teacher in its bfloat16."""
    distiller = build(teacher_files, dict(kd=KD), dtype='bfloat16')
    seen = record_loss_calls(distiller)
    teacher_fc = record_outputs(distiller.teacher.head.fc)
    with torch.autocast('cpu', dtype=torch.float16):
        distiller(*classification_batch(), mode='loss')
    assert teacher_fc[0].dtype == torch.bfloat16
    kd_args = seen['kd'][0]
    assert kd_args['teacher_logits'].dtype == torch.float32
    assert torch.equal(kd_args['teacher_logits'], teacher_fc[0].float())


def test_teacher_dtype_errors_name_the_fix(teacher_files):
    with pytest.raises(ValueError, match="teacher dtype must be one of \\['float32', "
                                         "'bfloat16', 'float16'\\], got 'float64'"):
        build(teacher_files, dict(kd=KD), dtype='float64')
    config, checkpoint = teacher_files
    with pytest.raises(ValueError, match='shared_modules \\[.backbone.\\] need a float32 '
                                         'teacher.*Remove teacher.dtype'):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            Distiller(student=tiny_classifier(8), shared_modules=['backbone'],
                      teacher=dict(config=config, checkpoint=checkpoint, dtype='float16'),
                      distill_losses=dict(kd=KD))


@needs_cpu_float16_autocast
def test_a_teacher_that_fails_in_half_precision_names_dtype_device_and_fix(teacher_files):
    distiller = build(teacher_files, dict(kd=KD), dtype='float16')

    def unsupported(*args):  # what torch raises where a kernel lacks the dtype
        raise RuntimeError('"slow_conv2d_cpu" not implemented for \'Half\'')

    distiller.teacher.backbone.register_forward_pre_hook(unsupported)
    with pytest.raises(RuntimeError, match="the teacher failed in torch.float16 on cpu "
                                           r"\(.*not implemented for 'Half'\).*try "
                                           "teacher.dtype='bfloat16'.*or remove teacher.dtype"):
        distiller(*classification_batch(), mode='loss')


def test_switched_off_loss_is_an_exact_zero_that_reaches_its_parameters(teacher_files):
    distiller = build(teacher_files, dict(kd=KD, fea=FEA))
    calls = []
    distiller.teacher.backbone.register_forward_hook(lambda *a: calls.append('teacher'))
    for name, loss in distiller.distill_losses.items():
        loss.register_forward_hook(lambda *a, name=name: calls.append(name))
    for name in ('kd', 'fea'):
        distiller.set_loss_scale(name, 0.0)
    inputs, samples = classification_batch()
    losses = distiller(inputs, samples, mode='loss')
    assert calls == []  # neither the teacher nor any loss ran
    assert losses['loss_kd'].item() == losses['loss_fea'].item() == 0.0
    assert losses['teacher_time'].item() == 0.0
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    align = distiller.distill_losses.fea.align.weight
    assert align.grad is not None and not align.grad.any()  # reached, with a zero gradient
    # The student's gradients are those of its own loss alone.
    own = {n: p.grad.clone() for n, p in distiller.student.named_parameters()}
    distiller.zero_grad(set_to_none=True)
    distiller.student.loss(inputs, samples)['loss'].backward()
    for name, param in distiller.student.named_parameters():
        torch.testing.assert_close(own[name], param.grad, rtol=0, atol=0, msg=name)


def test_teacher_time_is_logged_when_the_teacher_runs(teacher_files):
    distiller = build(teacher_files, dict(kd=KD))
    # A teacher that takes at least 50 ms more; the student's own forward is not slowed.
    distiller.teacher.backbone.register_forward_pre_hook(lambda *a: time.sleep(0.05))
    start = time.perf_counter()
    losses = distiller(*classification_batch(), mode='loss')
    step = time.perf_counter() - start
    assert 0.05 <= losses['teacher_time'].item() < step


# Not representable in bfloat16 (8 bits of mantissa): 123.675 would become 123.5, 58.395 58.5.
TEACHER_MEAN, TEACHER_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def test_bf16_teacher_prepares_its_inputs_with_float32_mean_and_std(teacher_files):
    """A half-precision teacher's network is cast; its data preprocessor keeps float32 mean and
    std, so the batch it gets is its own float32 preparation (rounded to bfloat16 only as it
    enters the network)."""
    config, checkpoint = teacher_files
    teacher_pre = dict(type='ClsDataPreprocessor', mean=TEACHER_MEAN, std=TEACHER_STD,
                       to_rgb=False)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(
            student=dict(tiny_classifier(4), data_preprocessor=dict(
                type='ClsDataPreprocessor', mean=[127.5] * 3, std=[64.0] * 3, to_rgb=True)),
            teacher=dict(config=config, checkpoint=checkpoint, dtype='bfloat16',
                         cfg_options={'model.data_preprocessor': teacher_pre}),
            distill_losses=dict(kd=KD))
    teacher = distiller.teacher
    assert teacher.backbone.conv1.weight.dtype == torch.bfloat16
    assert teacher.head.fc.weight.dtype == torch.bfloat16
    mean, std = teacher.data_preprocessor.mean, teacher.data_preprocessor.std
    assert mean.dtype == std.dtype == torch.float32
    assert torch.equal(mean, torch.tensor(TEACHER_MEAN).view(3, 1, 1))
    assert torch.equal(std, torch.tensor(TEACHER_STD).view(3, 1, 1))

    _, samples = classification_batch()
    torch.manual_seed(0)
    images = torch.randint(0, 256, (len(samples), 3, 16, 16), dtype=torch.uint8)
    # The teacher's own preparation by hand, in float32: BGR kept, (x - mean) / std.
    by_hand = (images.float() - torch.tensor(TEACHER_MEAN).view(1, 3, 1, 1)) / \
        torch.tensor(TEACHER_STD).view(1, 3, 1, 1)
    own = teacher.data_preprocessor(dict(inputs=images.clone()), False)['inputs']
    assert own.dtype == torch.float32
    torch.testing.assert_close(own, by_hand, rtol=0, atol=1e-6)
    # From the student's batch (RGB, mean 127.5, std 64): converted to the teacher's.
    data = distiller.data_preprocessor(dict(inputs=images.clone(), data_samples=samples), True)
    torch.testing.assert_close(data['inputs'], (images.flip(1).float() - 127.5) / 64,
                               rtol=0, atol=1e-6)
    converted = distiller.teachers['teacher'].inputs(data['inputs'])
    assert converted.dtype == torch.float32
    torch.testing.assert_close(converted, by_hand, rtol=0, atol=1e-5)
    # What the network gets in a training step: that batch, rounded to bfloat16.
    seen = []
    teacher.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    distiller(**data, mode='loss')
    assert seen[0].dtype == torch.bfloat16
    torch.testing.assert_close(seen[0].float(), by_hand, rtol=2 ** -8, atol=1e-5)


def test_float32_copies_reach_into_dicts_lists_tuples_and_named_tuples():
    """Every half-precision tensor, however nested, comes back as float32 with the same values
    (each is exact in bfloat16 and float16); float32 tensors come back as they are, integer
    tensors and other values unchanged."""
    Pair = namedtuple('Pair', 'first second')
    ready = torch.tensor([0.25, 8.0])
    value = dict(
        logits=torch.tensor([1.5, -2.25], dtype=torch.bfloat16),
        levels=[torch.tensor([[0.5, 3.0]], dtype=torch.float16),
                (torch.tensor([-1.0], dtype=torch.bfloat16), torch.tensor([7]))],
        pair=Pair(torch.tensor([2.0], dtype=torch.float16), dict(deep=[torch.tensor(
            [0.125], dtype=torch.bfloat16)])),
        ready=ready, name='fpn', scale=0.5)
    out = float32_copies(value)
    assert set(out) == set(value)
    expected = {('logits',): [1.5, -2.25], ('levels', 0): [[0.5, 3.0]], ('levels', 1, 0): [-1.0],
                ('pair', 0): [2.0], ('pair', 1, 'deep', 0): [0.125]}
    for path, numbers in expected.items():
        tensor = out
        for step in path:
            tensor = tensor[step]
        assert tensor.dtype == torch.float32, path
        assert tensor.tolist() == numbers, path
    assert isinstance(out['levels'], list) and isinstance(out['levels'][1], tuple)
    assert isinstance(out['pair'], Pair) and isinstance(out['pair'].second['deep'], list)
    assert out['levels'][1][1].dtype == torch.int64 and out['levels'][1][1].tolist() == [7]
    assert out['ready'] is ready
    assert (out['name'], out['scale']) == ('fpn', 0.5)
    assert value['logits'].dtype == torch.bfloat16  # copies: the input is left as it was
