"""Distillation in two processes (CPU, gloo) through MMEngine's Runner, one run per codebase.

Each test trains a real config in two processes (``dist_utils.train_in_phases``: prepared as
``tools/train.py --launcher pytorch`` prepares it), resumes it in two processes, validates
the last checkpoint in two processes, then resumes the first phase's checkpoint in this
process and validates the same last checkpoint here. It asserts that:

- the Runner wrapped the distiller in ``AnyDeviceDistributedDataParallel`` with
  ``device_ids=None`` and without ``find_unused_parameters``;
- the ranks' student parameters are identical after each phase (and did change);
- the teacher is identical on every rank and equal to its checkpoint after training (in
  bfloat16 for the digits run, whose teacher has ``dtype='bfloat16'``);
- the ranks trained on disjoint halves of the data, together all of it;
- rank 0's checkpoint resumes in two processes and in one, from the saved weights;
- the metric is computed on every validation sample (gathered from both ranks) and equals
  the single-process metric of the same checkpoint.

mmseg's run also switches every distillation loss off after its first iteration
(``DistillLossWeightHook(policy='stop')``): the teacher no longer runs, MGD's generator is left
without a loss, and DDP (``find_unused_parameters=False``) trains on.
"""
import glob
import os
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace
from typing import Dict, Union

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from benchmarks.digits.run import write_digits
from e2e.dist_utils import (RankProbe, free_port, load_records, run_in_processes,
                            train_in_phases)
from mmdistill.engine import safe_checkpoint_loading
from mmdistill.testing import write_coco_detection, write_coco_keypoints, write_seg_dataset
from helpers.rtmpose import loader
from helpers.runner import write_teacher_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCHMARKS = osp.join(ROOT, 'benchmarks')
DIGITS_CONFIGS = osp.join(BENCHMARKS, 'digits', 'configs')
WORLD_SIZE = 2


# --------------------------------------------------------------------------- the scenario
def two_process_scenario(tmp, cfg: Config, first: dict, second: dict, first_checkpoint: str):
    """Phases ``first`` and ``second`` (resumed) in two processes, then ``second`` resumed
    from rank 0's ``first_checkpoint`` in this process; both validate the last checkpoint."""
    config = str(tmp / 'config.py')
    cfg.dump(config)
    work_dir, out = str(tmp / 'work'), str(tmp / 'records')
    os.makedirs(out)
    phases = [dict(config=config, work_dir=work_dir, options=first),
              dict(config=config, work_dir=work_dir, options=dict(second, resume=True))]
    run_in_processes(train_in_phases, phases, out, world_size=WORLD_SIZE)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        last_checkpoint = f.read().strip()

    single_cfg = Config.fromfile(config)
    single_cfg.merge_from_dict(dict(second, resume=True, work_dir=str(tmp / 'single'),
                                    load_from=osp.join(work_dir, first_checkpoint)))
    single = Runner.from_cfg(single_cfg)
    probe = RankProbe()
    single.register_hook(probe)
    with safe_checkpoint_loading('resume'):
        single.train()
    with safe_checkpoint_loading('load_from'):
        single.load_checkpoint(last_checkpoint)
    return SimpleNamespace(first=load_records(out, 0), second=load_records(out, 1),
                           single=probe.record, single_iter=single.iter,
                           single_metrics=single.val_loop.run(), single_runner=single)


def dataset_ids(dataset) -> list:
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    return sorted((info.get('img_path'), info.get('id')) for info in infos)


def check_scenario(run, teacher_checkpoint: Union[str, Dict[str, str]], first_iters: int,
                   second_iters: int, single_iters: int,
                   teacher_dtype: torch.dtype = torch.float32):
    """The assertions that every codebase's two-process run must pass; ``teacher_checkpoint``
    is the single teacher's, or each teacher's by its name (``<name>`` of ``teachers=``);
    ``single_iters`` is where the single process's resumed run ends (an epoch there has twice
    the iterations)."""
    if isinstance(teacher_checkpoint, str):
        teacher_checkpoint = {'teacher': teacher_checkpoint}
    first, second = run.first, run.second
    for record in first + second:
        assert record['wrapper'] == 'AnyDeviceDistributedDataParallel'
        assert record['device_ids'] is None and record['find_unused_parameters'] is False
        assert record['world_size'] == WORLD_SIZE
    assert [r['iter'] for r in first] == [first_iters] * WORLD_SIZE
    assert [r['iter'] for r in second] == [second_iters] * WORLD_SIZE

    # The student: identical on both ranks after each phase, and trained.
    for records in (first, second):
        rank0, rank1 = records[0]['student'], records[1]['student']
        for key, value in rank0.items():
            torch.testing.assert_close(rank1[key], value, rtol=0, atol=0, msg=key)
    start, end = first[0]['student_at_start'], first[0]['student']
    assert any(not torch.equal(start[k], end[k]) for k in end)

    # The teachers: on every rank, still what their checkpoints hold (in their dtype).
    for record in first + second:
        assert set(record['teachers']) == set(teacher_checkpoint)
        for name, checkpoint in teacher_checkpoint.items():
            loaded = torch.load(checkpoint, weights_only=False)['state_dict']
            assert set(record['teachers'][name]) == set(loaded)
            for key, value in loaded.items():
                if value.is_floating_point():
                    value = value.to(teacher_dtype)
                torch.testing.assert_close(record['teachers'][name][key], value, rtol=0, atol=0,
                                           msg=f'{name}.{key}')

    # The data: disjoint halves of the training set in the first phase.
    seen = [[i for batch in record['ids'] for i in batch] for record in first]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == dataset_ids(run.single_runner.train_dataloader.dataset)

    # Resuming rank 0's checkpoint, in two processes and in one: from the saved weights.
    for record in second + [run.single]:
        assert record['start_iter'] == first_iters
        for key, value in first[0]['student'].items():
            torch.testing.assert_close(record['student_at_start'][key], value, rtol=0, atol=0)
    assert run.single_iter == single_iters

    # Validation: each rank validated half the samples, the metric computed on all of them.
    num_val = len(run.single_runner.val_dataloader.dataset)
    assert [r['val_samples'] for r in second] == [num_val // WORLD_SIZE] * WORLD_SIZE
    assert second[0]['computed_on'] == [num_val]
    assert second[1]['val_metrics'] == second[0]['val_metrics']
    assert second[0]['val_metrics'] == pytest.approx(run.single_metrics, rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------------ mmpretrain
def digits_in_two_processes(tmp_path, config: str, options: dict) -> Config:
    """A digits config of ``benchmarks/digits/configs`` on 32 training and 32 validation
    images, two iterations an epoch in each of two processes, with ``options``."""
    root = str(tmp_path / 'digits')
    write_digits(root, limit=64)  # 32 train, 32 val
    cfg = Config.fromfile(osp.join(DIGITS_CONFIGS, config))
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'train_dataloader.batch_size': 8,  # per process: 2 iterations an epoch
        'val_dataloader.batch_size': 8,
        'train_cfg.val_begin': 100,  # validated once, after the last phase
        'default_hooks.checkpoint': dict(interval=1, max_keep_ckpts=-1),
        'default_hooks.logger.interval': 1,
        **options,
    })
    return cfg


def untrained_digits_teacher(tmp_path, name: str = 'teacher') -> str:
    return write_teacher_checkpoint(osp.join(DIGITS_CONFIGS, 'teacher_resnet18.py'), {},
                                    str(tmp_path / f'{name}.pth'))


def test_kd_digits_from_a_bf16_teacher_in_two_processes(tmp_path):
    teacher = untrained_digits_teacher(tmp_path)
    cfg = digits_in_two_processes(tmp_path, 'kd_resnet18_w4_from_resnet18.py', {
        'model.teacher.checkpoint': teacher, 'model.teacher.dtype': 'bfloat16'})
    run = two_process_scenario(tmp_path, cfg, {'train_cfg.max_epochs': 1},
                               {'train_cfg.max_epochs': 2}, 'epoch_1.pth')
    check_scenario(run, teacher, first_iters=2, second_iters=4, single_iters=6,
                   teacher_dtype=torch.bfloat16)
    for record in run.first:  # the teacher ran once a step; its time is logged
        assert record['teacher_calls'] == [1, 1]
        assert all(log['loss_kd'] > 0 and log['teacher_time'] > 0 for log in record['logs'])
    assert 0 <= run.single_metrics['accuracy/top1'] <= 100


def test_kd_digits_from_two_teachers_in_two_processes(tmp_path):
    # Two frozen teachers (the mean of their logits is the target), neither a submodule of
    # the distiller: DDP wraps the student's parameters only, every rank runs both teachers
    # once a step, and both stay what their checkpoints hold.
    torch.manual_seed(0)  # two different sets of untrained weights
    teachers = {name: untrained_digits_teacher(tmp_path, name) for name in ('a', 'b')}
    cfg = digits_in_two_processes(tmp_path, 'kd_resnet18_w4_from_two_resnet18.py', {
        f'model.teachers.{name}.checkpoint': path for name, path in teachers.items()})
    run = two_process_scenario(tmp_path, cfg, {'train_cfg.max_epochs': 1},
                               {'train_cfg.max_epochs': 2}, 'epoch_1.pth')
    check_scenario(run, teachers, first_iters=2, second_iters=4, single_iters=6)
    for record in run.first:
        assert record['teacher_calls'] == [2, 2]
        assert all(log['loss_kd'] > 0 and log['teacher_time_a'] > 0 and
                   log['teacher_time_b'] > 0 for log in record['logs'])


def test_dist_train_script_trains_in_two_cpu_processes(tmp_path):
    """The documented recipe, as a user types it: tools/dist_train.sh CONFIG 2 starts torchrun,
    which starts tools/train.py --launcher pytorch twice; without CUDA they talk over gloo."""
    root = str(tmp_path / 'digits')
    write_digits(root, limit=64)
    teacher = untrained_digits_teacher(tmp_path)
    work_dir = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh',
         osp.join(DIGITS_CONFIGS, 'kd_resnet18_w4_from_resnet18.py'),
         '2', '--work-dir', work_dir, '--cfg-options', f'model.teacher.checkpoint={teacher}',
         f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
         'train_dataloader.batch_size=16', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
         'default_hooks.logger.interval=1'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (log_file, ) = glob.glob(osp.join(work_dir, '*', '*.log'))  # rank 0 writes the log
    log = open(log_file).read()
    # Before the Runner (and its log file) exists; printed on the console.
    assert 'process group initialised with gloo, rank 0 of 2' in result.stdout + result.stderr
    assert 'DDP gets device_ids=None' in log
    assert 'Epoch(train) [1][1/1]' in log and 'teacher_time: ' in log  # 32 images, 16 a rank
    assert 'accuracy/top1: ' in log
    keys = torch.load(osp.join(work_dir, 'epoch_1.pth'), weights_only=False)['state_dict']
    assert any(k.startswith('student.') for k in keys)
    assert not any(k.startswith('teacher.') for k in keys)


# ----------------------------------------------------------------------------------- mmdet
def test_fgd_retinanet_in_two_processes(tmp_path):
    dense = osp.join(BENCHMARKS, 'dense', 'configs')
    root = str(tmp_path / 'coco')
    write_coco_detection(root, num_images=12, size=(128, 128), num_classes=3, num_val=4)
    teacher = write_teacher_checkpoint(osp.join(dense, 'retinanet_r50_fpn_shapes-160.py'), {},
                                       str(tmp_path / 'teacher.pth'))
    cfg = Config.fromfile(osp.join(dense, 'fgd_retinanet_r18_from_r50_shapes-160.py'))
    split = dict(num_workers=0, persistent_workers=False)
    cfg.merge_from_dict({
        'model.teacher.checkpoint': teacher,
        'model.student.test_cfg.score_thr': 0.0,  # an untrained detector scores low
        'train_dataloader': dict(split, batch_size=2, dataset=dict(
            data_root=root, filter_cfg=dict(filter_empty_gt=False))),
        'val_dataloader': dict(split, batch_size=1, dataset=dict(data_root=root)),
        'val_evaluator.ann_file': osp.join(root, 'annotations', 'val.json'),
        'train_cfg.val_begin': 100,
        'default_hooks.checkpoint': dict(interval=1, max_keep_ckpts=-1),
        'default_hooks.logger.interval': 1,
    })
    run = two_process_scenario(tmp_path, cfg, {'train_cfg.max_epochs': 1},
                               {'train_cfg.max_epochs': 2}, 'epoch_1.pth')
    check_scenario(run, teacher, first_iters=2, second_iters=4, single_iters=6)
    for record in run.first:
        assert all(log['loss_fgd0_fg'] > 0 for log in record['logs'])
    assert 0 <= run.single_metrics['coco/bbox_mAP'] <= 1


# ----------------------------------------------------------------------------------- mmseg
def test_mgd_pspnet_in_two_processes_stopping_distillation(tmp_path):
    dense = osp.join(BENCHMARKS, 'dense', 'configs')
    root = str(tmp_path / 'shapes')
    write_seg_dataset(root, num_train=8, num_val=4, size=(64, 64), num_classes=4)
    teacher = write_teacher_checkpoint(osp.join(dense, 'pspnet_r34-d8_shapes-64x64.py'), {},
                                       str(tmp_path / 'teacher.pth'))
    cfg = Config.fromfile(osp.join(dense, 'mgd_pspnet_r18_from_r34-d8_shapes-64x64.py'))
    cfg.merge_from_dict({
        'model.teacher.checkpoint': teacher,
        **{f'{split}_dataloader.dataset.data_root': root for split in ('train', 'val')},
        'train_dataloader.batch_size': 2,  # 2 processes × 2 iterations × 2 = the 8 images
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'param_scheduler.0.end': 4,
        'train_cfg.val_begin': 100,
        'default_hooks.checkpoint': dict(interval=2, max_keep_ckpts=-1),
        'default_hooks.logger.interval': 1,
        # Both losses (MGD, with its generator, and the logit term) stop after iteration 1.
        'custom_hooks': [dict(type='mmdistill.DistillLossWeightHook', policy='stop',
                              by='iter', at=1)],
    })
    run = two_process_scenario(tmp_path, cfg, {'train_cfg.max_iters': 2},
                               {'train_cfg.max_iters': 4}, 'iter_2.pth')
    check_scenario(run, teacher, first_iters=2, second_iters=4, single_iters=4)
    for record in run.first + run.second:
        logs = record['logs']
        stopped = logs[1:] if record in run.first else logs
        assert all(log['loss_mgd'] == log['loss_logit'] == 0 for log in stopped)
        assert all(log['teacher_time'] == 0 for log in stopped)
        assert all(log['decode.loss_ce'] > 0 for log in logs)
    for record in run.first:
        assert record['logs'][0]['loss_mgd'] > 0 and record['logs'][0]['loss_logit'] > 0
        assert record['teacher_calls'] == [1, 0]
    assert all(r['teacher_calls'] == [0, 0] for r in run.second)
    # The student kept training after the stop.
    after_stop, end = run.first[0]['student'], run.second[0]['student']
    assert any(not torch.equal(after_stop[k], end[k]) for k in end)
    assert 0 <= run.single_metrics['mIoU'] <= 100


# ---------------------------------------------------------------------------------- mmpose
def pose_options(cfg: Config, root: str, teacher: str) -> dict:
    return {
        'model.teacher.checkpoint': teacher,
        'train_dataloader': loader(cfg.train_dataloader, root, 'train'),
        'val_dataloader': loader(cfg.val_dataloader, root, 'val'),
        'val_evaluator.ann_file': osp.join(root, 'annotations', 'val.json'),
        'param_scheduler.0.end': 2,
        'train_cfg.val_begin': 100,  # validated once, after the last phase
        'default_hooks.checkpoint': dict(interval=1, max_keep_ckpts=-1, save_best=None),
        'default_hooks.logger.interval': 1,
    }


@pytest.fixture(scope='module')
def stick_figures(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('stick_figures'))
    write_coco_keypoints(root, num_images=20, num_val=4, size=(128, 96))  # 16 train
    return root


@pytest.mark.parametrize('stage', ['s1_dwpose_s-to-t', 's2_dwpose_t'])
def test_dwpose_stage_in_two_processes(stage, stick_figures, tmp_path):
    configs = osp.join(BENCHMARKS, 'dwpose', 'configs')
    cfg = Config.fromfile(osp.join(configs, f'{stage}_stick-figures-64x96.py'))
    teacher = write_teacher_checkpoint(cfg.model.teacher.config, {},
                                       str(tmp_path / 'teacher.pth'))
    cfg.merge_from_dict(pose_options(cfg, stick_figures, teacher))
    run = two_process_scenario(tmp_path, cfg, {'train_cfg.max_epochs': 1},
                               {'train_cfg.max_epochs': 2}, 'epoch_1.pth')
    check_scenario(run, teacher, first_iters=2, second_iters=4,  # 16 images, 4 a batch
                   single_iters=6)
    for record in run.first:
        assert all(log['loss_logit'] > 0 for log in record['logs'])
    assert 0 <= run.single_metrics['coco/AP'] <= 1
