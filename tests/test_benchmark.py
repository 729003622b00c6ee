"""The overhead benchmark: its three timings, the leaf modules it counts, its synthetic batches."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.registry import DefaultScope

from benchmarks.digits.run import write_digits
from conftest import script_module, tiny_classifier, write_config
from mmdistill.apis import (benchmark_config, benchmark_overhead, build_distiller,
                            synthetic_batch)
from mmdistill.benchmarking import ModuleUsage, OverheadResult
from mmdistill.benchmarking.timing import Spread
from mmdistill.utils import build_model_in_scope, load_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
KD_CONFIGS = osp.join(ROOT, 'configs', 'kd')

# Leaf modules of tiny_classifier (mmpretrain ResNet_CIFAR-18, GAP neck, linear head), in the
# order they run: a stem of conv1, bn1, relu; four stages of two BasicBlocks, each block with
# conv1, bn1, conv2, bn2, relu and drop_path (an Identity), the first block of stages 2-4 also
# with a downsample (conv, bn); the neck's gap; the head's fc, and its loss module (which
# ``tensor`` mode never calls).
STEM, BLOCK, DOWNSAMPLE = 3, 6, 2
LAYER1 = 2 * BLOCK
DEEPER_LAYER = 2 * BLOCK + DOWNSAMPLE
BACKBONE = STEM + LAYER1 + 3 * DEEPER_LAYER
ALL_LEAVES = BACKBONE + 1 + 2

KD_ON_LOGITS = dict(type='HintonKDLoss', tau=2.0,
                    inputs=dict(student_logits='student.head.fc',
                                teacher_logits='teacher.head.fc'))
MSE_ON_LAYER1 = dict(type='FeatureMSELoss', student_channels=4, teacher_channels=8,
                     inputs=dict(student_feature='student.backbone.layer1',
                                 teacher_feature='teacher.backbone.layer1'))


def distillation_config(tmp_path, teacher_files, loss, checkpoint=None) -> str:
    """A config file of a tiny-classifier distiller (width 4 <- width 8) with one loss."""
    teacher_config, teacher_checkpoint = teacher_files
    model = dict(type='mmdistill.Distiller', student=tiny_classifier(4),
                 teacher=dict(config=teacher_config, checkpoint=checkpoint or teacher_checkpoint),
                 distill_losses=dict(distill=loss))
    return write_config(str(tmp_path / 'distill.py'), default_scope='mmpretrain', model=model)


@pytest.mark.parametrize('loss, teacher_ran, last, teacher_parts', [
    (KD_ON_LOGITS, ALL_LEAVES - 1, 'head.fc',
     dict(backbone=(BACKBONE, BACKBONE), neck=(1, 1), head=(1, 2))),
    (MSE_ON_LAYER1, STEM + LAYER1, 'backbone.layer1.1.drop_path',
     dict(backbone=(STEM + LAYER1, BACKBONE), neck=(0, 1), head=(0, 2))),
])
def test_timings_ratio_and_modules_run(tmp_path, teacher_files, loss, teacher_ran, last,
                                       teacher_parts):
    config = distillation_config(tmp_path, teacher_files, loss)
    result = benchmark_config(config, batch_size=4, input_size=(16, 16), warmup=2, iters=3)

    assert result.student_step_ms > 0 and result.teacher_forward_ms > 0
    assert result.distill_step_ms > 0
    assert result.input_shape == (4, 3, 16, 16)
    # The teacher stops at its deepest tap: layer1 runs 15 of its 60 leaves, head.fc all
    # but the loss module.
    teacher = result.teacher_modules
    assert (teacher.ran, teacher.total, teacher.last) == (teacher_ran, ALL_LEAVES, last)
    assert teacher.parts == teacher_parts
    # The distillation step runs the whole student, its loss module included.
    student = result.student_modules
    assert (student.ran, student.total) == (ALL_LEAVES, ALL_LEAVES)
    assert student.parts['head'] == (2, 2)
    numbers = result.to_dict()
    assert numbers['ratio'] == result.ratio
    assert numbers['teacher_modules']['ran'] == teacher_ran


def test_timed_steps_leave_every_weight_where_it_was(tmp_path, teacher_files):
    """Every round does the same work: the steps run at learning rate 0 (a model trained at a
    real rate from random weights can diverge within the timed steps)."""
    distiller, _ = build_distiller(distillation_config(tmp_path, teacher_files, KD_ON_LOGITS))
    before = {k: v.clone() for k, v in distiller.state_dict().items()
              if v.is_floating_point() and 'running' not in k}
    data = synthetic_batch(distiller.student, 'mmpretrain', 4, (16, 16))
    result = benchmark_overhead(distiller, data, warmup=2, iters=3)
    after = distiller.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    spread = result.ratio_spread
    assert spread.low <= result.ratio == spread.median <= spread.high
    assert result.cpu_ratio_spread.low <= result.cpu_ratio_spread.high
    assert set(result.cpu_ms) == {'student_step', 'teacher_forward', 'distill_step'}
    with pytest.raises(ValueError, match='warmup \\(1\\) at least 2'):
        benchmark_overhead(distiller, data, warmup=1, iters=1)


def test_modules_shared_with_the_teacher_do_not_count_for_the_student(teacher_files):
    from mmdistill.distillers import Distiller
    config, checkpoint = teacher_files
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = Distiller(student=tiny_classifier(8),  # the teacher's architecture
                              teacher=dict(config=config, checkpoint=checkpoint),
                              distill_losses=dict(kd=KD_ON_LOGITS), shared_modules=['backbone'])
    data = synthetic_batch(distiller.student, 'mmpretrain', 2, (16, 16))
    result = benchmark_overhead(distiller, data, warmup=2, iters=1)
    # The student reuses the teacher's backbone output: only its neck and head run.
    assert result.student_modules.parts == dict(backbone=(0, BACKBONE), neck=(1, 1),
                                                head=(2, 2))
    assert result.teacher_modules.parts['backbone'] == (BACKBONE, BACKBONE)


def test_the_teacher_checkpoint_is_replaced(tmp_path, teacher_files):
    config = distillation_config(tmp_path, teacher_files, KD_ON_LOGITS,
                                 checkpoint='https://example.invalid/teacher.pth')
    random_teacher, _ = build_distiller(config)  # no download: the checkpoint is dropped
    loaded, _ = build_distiller(config, teacher_checkpoint=teacher_files[1])
    saved = torch.load(teacher_files[1], weights_only=False)['state_dict']
    torch.testing.assert_close(loaded.teacher.state_dict(), saved)
    assert not torch.equal(random_teacher.teacher.head.fc.weight, saved['head.fc.weight'])
    with pytest.raises(ValueError, match='builds a ImageClassifier, not an mmdistill'):
        build_distiller(teacher_files[0])


def test_train_data_gives_the_batch_the_config_pipeline_makes(tmp_path):
    root = str(tmp_path / 'digits')
    write_digits(root, limit=40)
    config = osp.join(ROOT, 'benchmarks', 'digits', 'configs', 'kd_resnet18_w4_from_resnet18.py')
    result = benchmark_config(config, batch_size=4, data='train', warmup=2, iters=1,
                              cfg_options={'train_dataloader.dataset.data_root': root})
    # The digits pipeline crops 32x32 images; the default input_size (224, 224) is unused,
    # and the config's batch size (32) gives way to the one asked for.
    assert result.input_shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="data must be 'synthetic' or 'train'"):
        benchmark_config(config, batch_size=4, data='val')


def student_of(config: str, cfg_options: dict = None):
    """The student of a distillation config in configs/kd/, built in its own scope."""
    cfg = load_config(osp.join(KD_CONFIGS, config), cfg_options)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return build_model_in_scope(cfg.model.student, cfg.default_scope), cfg.default_scope


def student_losses(student, data: dict) -> dict:
    student.train()
    prepared = student.data_preprocessor(data, True)
    return student(prepared['inputs'], prepared['data_samples'], mode='loss')


def test_synthetic_detection_batch():
    student, scope = student_of('fpn_retinanet_r18_from_r50_fpn_1x_coco.py')
    data = synthetic_batch(student, scope, 2, (96, 128), seed=3)
    for image, sample in zip(data['inputs'], data['data_samples']):
        assert image.shape == (3, 96, 128) and image.dtype == torch.uint8
        boxes, labels = sample.gt_instances.bboxes, sample.gt_instances.labels
        assert boxes.shape == (3, 4) and labels.shape == (3, )
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
        assert 0 <= labels.min() and labels.max() < 80
        assert sample.img_shape == (96, 128)
    losses = student_losses(student, data)
    assert losses['loss_cls'][0].item() > 0 and losses['loss_bbox'][0].item() > 0
    again = synthetic_batch(student, scope, 2, (96, 128), seed=3)  # seeded: the same batch
    assert torch.equal(again['inputs'][1], data['inputs'][1])


def test_synthetic_segmentation_batch():
    student, scope = student_of(  # its preprocessor would pad to the 512x1024 crop size
        'kd_pspnet_r18_from_r101-d8_4xb2-80k_cityscapes-512x1024.py',
        {'model.student.data_preprocessor.size': (64, 64)})
    data = synthetic_batch(student, scope, 2, (64, 64))
    labels = data['data_samples'][0].gt_sem_seg.data
    assert labels.shape == (1, 64, 64) and 0 <= labels.min() and labels.max() < 19
    assert torch.isfinite(student_losses(student, data)['decode.loss_ce'])


def test_synthetic_pose_batch_is_encoded_by_the_head_codec():
    student, scope = student_of('kd_rtmpose-s_from_rtmpose-m_8xb256-420e_coco-256x192.py')
    data = synthetic_batch(student, scope, 2, (256, 192))
    sample = data['data_samples'][0]
    keypoints = torch.as_tensor(sample.gt_instances.keypoints)  # (1, 17, 2), x and y
    labels = sample.gt_instance_labels
    # SimCC targets: 2 bins per pixel (split ratio 2.0), peaked at the keypoint.
    assert labels.keypoint_x_labels.shape == (1, 17, 384)
    assert labels.keypoint_y_labels.shape == (1, 17, 512)
    peak_x = labels.keypoint_x_labels.argmax(-1).float() / 2
    assert (peak_x - keypoints[..., 0]).abs().max() <= 0.5
    assert labels.keypoint_weights.shape == (1, 17)
    assert student_losses(student, data)['loss_kpt'].item() > 0
    with pytest.raises(ValueError, match='pass --input-size 256 192'):
        synthetic_batch(student, scope, 1, (128, 96))


def test_detection_teacher_tapped_in_its_neck_never_runs_its_head():
    config = osp.join(KD_CONFIGS, 'fpn_retinanet_r18_from_r50_fpn_1x_coco.py')
    result = benchmark_config(config, batch_size=1, input_size=(64, 64), warmup=2, iters=1)
    teacher = result.teacher_modules
    head_ran, head_total = teacher.parts['bbox_head']
    assert head_ran == 0 and head_total > 0
    assert teacher.parts['neck'][0] == teacher.parts['neck'][1]  # every FPN conv ran
    assert teacher.last == 'neck.fpn_convs.4.conv'
    assert result.student_modules.parts['bbox_head'][0] > 0


def test_command_line_writes_a_table_and_json(tmp_path, teacher_files):
    config = distillation_config(tmp_path, teacher_files, MSE_ON_LAYER1)
    out = str(tmp_path / 'numbers.json')
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'analysis', 'benchmark_overhead.py'),
         f'{config}@3x16x16', '--warmup', '2', '--iters', '2', '--threads', '1',
         '--teacher-dtypes', 'bfloat16', 'float32', '--json', out],
        capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    record, half = json.load(open(out))  # float32 first, whatever the order asked
    assert (record['teacher_dtype'], half['teacher_dtype']) == ('float32', 'bfloat16')
    assert record['input_shape'] == [3, 3, 16, 16] and record['threads'] == 1
    assert record['teacher_modules']['ran'] == STEM + LAYER1
    assert f'teacher ran {STEM + LAYER1}/{ALL_LEAVES} leaf modules' in done.stdout
    # against its own floor: the ratio of its medians (the paired ratio is per round)
    assert record['versus_float32_floor'] == pytest.approx(
        record['distill_step_ms'] / record['floor_ms'])
    assert record['ratio_spread']['low'] <= record['ratio'] <= record['ratio_spread']['high']
    assert f"{record['ratio']:.3f} [{record['ratio_spread']['low']:.3f}-" in done.stdout
    assert 'bfloat16  ' in done.stdout
    assert f"{half['versus_float32_floor']:.3f}" in done.stdout


def test_commands_recording_different_tables_write_different_work_dirs(monkeypatch):
    """The README's cost commands record two tables one after the other: each gets its own
    ``results.json`` (one file holds one table), unless --work-dir says otherwise."""
    benchmark_script = script_module('tools/analysis/benchmark_overhead.py',
                                     'benchmark_overhead')

    def work_dir(*arguments):
        monkeypatch.setattr(sys, 'argv', ['benchmark_overhead.py', 'x.py', *arguments])
        return benchmark_script.parse_args().work_dir
    assert work_dir('--record', 'overhead') == osp.join('work_dirs', 'overhead')
    assert work_dir('--record', 'dense_cost') == osp.join('work_dirs', 'dense_cost')
    assert work_dir('--record', 'dense_cost', '--work-dir', 'mine') == 'mine'
    assert work_dir() == osp.join('work_dirs', 'benchmark_overhead')


def test_overhead_figures_on_hand_made_timings():
    """Student step 100 ms, teacher forward 50 ms, distillation step 180 ms: the floor is
    150 ms, the step 1.2 times it, 20 % over. A bfloat16 run of the same pair (student step
    80 ms, distillation step 120 ms) is 1.5 student steps, against the float32 floor's 1.5
    student steps (150 / 100): 1.0 times the float32 floor."""
    benchmark_script = script_module('tools/analysis/benchmark_overhead.py',
                                     'benchmark_overhead')
    float32 = OverheadResult(100.0, 50.0, 180.0, (2, 3, 8, 8), None, None)
    assert float32.floor_ms == 150.0
    assert float32.ratio == pytest.approx(1.2)
    assert float32.overhead_pct == pytest.approx(20.0)
    half = OverheadResult(80.0, 20.0, 120.0, (2, 3, 8, 8), None, None, 'bfloat16')
    assert benchmark_script.versus_float32_floor(half, float32) == pytest.approx(1.0)
    assert benchmark_script.versus_float32_floor(float32, float32) == pytest.approx(1.2)
    assert benchmark_script.versus_float32_floor(half, None) is None


def test_recorded_table_gives_each_config_its_ratio_over_seeds_and_the_modules_run():
    """Two seeds of one config: ratios 1.2 (180 / 150) and 1.0 (150 / 150): 1.10 ± 0.14; the
    times are their means, so are the CPU-time ratios (1.25, 0.95) and the rounds' spreads
    (1.10, 1.08); the modules that ran go to the details."""
    from benchmarks.evidence import render_details, render_table
    benchmark_script = script_module('tools/analysis/benchmark_overhead.py',
                                     'benchmark_overhead')
    teacher = ModuleUsage(57, 60, 'backbone.layer4.1.conv2', {'backbone': (57, 57)})
    student = ModuleUsage(60, 60, 'head.fc', {'backbone': (57, 57), 'head': (3, 3)})
    table = benchmark_script.overhead_results('cost', [None], warmup=2, iters=2)
    for seed, (distill_ms, cpu, high) in enumerate([(180.0, 1.25, 1.32), (150.0, 0.95, 1.3)]):
        result = OverheadResult(100.0, 50.0, distill_ms, (2, 3, 8, 8), teacher, student,
                                ratio_spread=Spread(distill_ms / 150.0, 1.2, high),
                                cpu_ratio_spread=Spread(cpu, cpu, cpu))
        benchmark_script.add_record(table, 'configs/kd/x_from_y.py', seed, result, None,
                                    several_dtypes=False)
    assert render_table(table).splitlines()[2] == (
        '| x_from_y @ 2×3×8×8 | 2 | 1.10 ± 0.14 | 1.20, 1.00 | 100.0 | 50.0 | 165.0 | 1.10 '
        '| 1.09 |')
    assert render_details(table, 'modules').splitlines()[2] == (
        '| x_from_y @ 2×3×8×8 | 0 | teacher 57/60 to backbone.layer4.1.conv2; '
        'student 60/60 to head.fc |')


def test_several_teachers_are_each_counted_where_their_taps_stop(tmp_path, teacher_files):
    """Teacher ``a`` is tapped at its logits, ``b`` after its first stage: one distillation
    step runs all of ``a`` but its loss module, and only the stem and first stage of ``b``."""
    from mmdistill.apis.offline import offline_options
    config, checkpoint = teacher_files
    kd = dict(KD_ON_LOGITS, inputs=dict(student_logits='student.head.fc',
                                        teacher_logits='teachers.a.head.fc'))
    mse = dict(MSE_ON_LAYER1, inputs=dict(student_feature='student.backbone.layer1',
                                          teacher_feature='teachers.b.backbone.layer1'))
    model = dict(type='mmdistill.Distiller', student=tiny_classifier(4),
                 teachers=dict(a=dict(config=config, checkpoint=checkpoint),
                               b=dict(config=config, checkpoint=checkpoint)),
                 distill_losses=dict(kd=kd, mse=mse))
    path = write_config(str(tmp_path / 'two.py'), default_scope='mmpretrain', model=model)
    result = benchmark_config(path, batch_size=2, input_size=(16, 16), warmup=2, iters=1)
    usage = result.teacher_modules
    assert usage.ran == (ALL_LEAVES - 1) + (STEM + LAYER1) and usage.total == 2 * ALL_LEAVES
    assert usage.parts['teachers.a.head'] == (1, 2)
    assert usage.parts['teachers.b.backbone'] == (STEM + LAYER1, BACKBONE)
    assert usage.parts['teachers.b.head'] == (0, 2)
    assert result.teacher_forward_ms > 0 and result.teacher_dtype == 'float32'
    with pytest.raises(ValueError, match='one teacher_checkpoint cannot replace'):
        build_distiller(path, teacher_checkpoint=checkpoint)
    # No downloads for either teacher: both checkpoints dropped.
    options = offline_options(load_config(path))
    assert options['model.teachers.a.checkpoint'] is None
    assert options['model.teachers.b.checkpoint'] is None
    assert 'model.teacher.checkpoint' not in options
