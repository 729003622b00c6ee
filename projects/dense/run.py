"""Evidence runs for dense prediction: FGD and MGD on generated detection data, MGD on generated
segmentation data, end to end with the codebases' own datasets, pipelines and metrics.

    python projects/dense/run.py --task det|seg [--methods ...] [--seeds 0 1 2]
        [--epochs N | --iters N] [--work-dir DIR]

1. writes the generated data in the codebase's own format: COCO json + PNG images for mmdet
   (``mmdistill.testing.write_coco_detection``), mmseg's ``img_dir``/``ann_dir`` layout for
   mmseg (``mmdistill.testing.write_seg_dataset``);
2. trains the teacher once (seed 0, a schedule twice as long as the students'), then the
   student alone and with each method, once per seed, each with MMEngine's Runner and the
   configs in ``configs/``;
3. prints box mAP (``coco/bbox_mAP``) or mIoU (mean ± sample std over the seeds), train time,
   ms per iteration, and the distillation losses' share of the student's total loss over the
   last iterations (how much the method weighs in the objective at the papers' weights).

With CI=true the default schedule is a quarter as long (a smoke run, never skipped).
"""
import argparse
import os
import os.path as osp
import time
from typing import Callable, Dict, NamedTuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import mmdistill  # noqa: F401
from mmdistill.testing import write_coco_detection, write_seg_dataset

HERE = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(HERE, 'configs')
CI = os.environ.get('CI') == 'true'
SHARE_WINDOW = 20  # iterations over which the distillation losses' share is averaged


class Task(NamedTuple):
    """One evidence run: its data, configs, schedule and metric."""
    summary: str
    teacher: str
    methods: Dict[str, str]  # how the student is trained -> its config
    metric: str
    metric_name: str
    unit: str  # 'epochs' or 'iters'
    length: int  # the students' default schedule length in ``unit``
    teacher_factor: int  # the teacher trains this many times longer than the students
    write_data: Callable[[str], dict]
    data_overrides: Callable[[str], dict]
    schedule_overrides: Callable[[int], dict]


# ------------------------------------------------------------------------------ detection
DET_IMAGES, DET_VAL, DET_SIZE, DET_CLASSES = 400, 80, (128, 128), 3


def write_det_data(root: str) -> dict:
    return write_coco_detection(root, num_images=DET_IMAGES, size=DET_SIZE,
                                num_classes=DET_CLASSES, num_val=DET_VAL)


def det_data(root: str) -> dict:
    root = root.rstrip('/') + '/'
    return {
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'test_dataloader.dataset.data_root': root,
        'val_evaluator.ann_file': root + 'annotations/val.json',
        'test_evaluator.ann_file': root + 'annotations/val.json',
    }


def det_schedule(epochs: int) -> dict:
    """The recipe's 1x shape scaled to ``epochs``: ×0.1 after 8/12 and 11/12 of training
    (never before the first epoch has ended)."""
    return {
        'train_cfg.max_epochs': epochs,
        'param_scheduler.1.end': epochs,
        'param_scheduler.1.milestones': [max(epochs * 8 // 12, 1), max(epochs * 11 // 12, 1)],
        'default_hooks.checkpoint.interval': epochs,
    }


# ---------------------------------------------------------------------------- segmentation
SEG_TRAIN, SEG_VAL, SEG_SIZE, SEG_CLASSES = 200, 50, (64, 64), 4


def write_seg_data(root: str) -> dict:
    return write_seg_dataset(root, num_train=SEG_TRAIN, num_val=SEG_VAL, size=SEG_SIZE,
                             num_classes=SEG_CLASSES)


def seg_data(root: str) -> dict:
    return {f'{split}_dataloader.dataset.data_root': root
            for split in ('train', 'val', 'test')}


def seg_schedule(iters: int) -> dict:
    return {
        'train_cfg.max_iters': iters,
        'param_scheduler.0.end': iters,
        'default_hooks.checkpoint.interval': iters,
    }


TASKS = {
    'det': Task(
        summary=(f'Detection: generated COCO-format shapes, {DET_IMAGES - DET_VAL} train / '
                 f'{DET_VAL} val images of {DET_SIZE[0]}×{DET_SIZE[1]}, {DET_CLASSES} classes; '
                 'RetinaNet with a quarter-width ResNet-18 (student) or a half-width '
                 'ResNet-50 (teacher), 64-channel FPN and head, trained from scratch with '
                 'AdamW'),
        teacher='retinanet_r50_fpn_shapes-128.py',
        methods={'student': 'retinanet_r18_fpn_shapes-128.py',
                 'fgd': 'fgd_retinanet_r18_from_r50_shapes-128.py',
                 'mgd': 'mgd_retinanet_r18_from_r50_shapes-128.py'},
        metric='coco/bbox_mAP', metric_name='bbox mAP', unit='epochs', length=6,
        teacher_factor=2,
        write_data=write_det_data, data_overrides=det_data, schedule_overrides=det_schedule),
    'seg': Task(
        summary=(f'Segmentation: generated shapes in mmseg\'s folder layout, {SEG_TRAIN} train '
                 f'/ {SEG_VAL} val images of {SEG_SIZE[0]}×{SEG_SIZE[1]}, {SEG_CLASSES} classes '
                 '(background included); PSPNet-R18-d8 student, PSPNet-R34-d8 teacher, '
                 'trained from scratch with the recipe\'s SGD'),
        teacher='pspnet_r34-d8_shapes-64x64.py',
        methods={'student': 'pspnet_r18-d8_shapes-64x64.py',
                 'mgd': 'mgd_pspnet_r18_from_r34-d8_shapes-64x64.py'},
        metric='mIoU', metric_name='mIoU (%)', unit='iters', length=300, teacher_factor=2,
        write_data=write_seg_data, data_overrides=seg_data, schedule_overrides=seg_schedule),
}


# -------------------------------------------------------------------------------- running
def distill_share(runner: Runner, names) -> float:
    """The distillation losses' share of the total training loss, averaged over the last
    ``SHARE_WINDOW`` iterations (0 for the student alone)."""
    scalars = runner.message_hub.log_scalars
    parts = [buffer.mean(SHARE_WINDOW) for key, buffer in scalars.items()
             if any(key == f'train/loss_{name}' or key.startswith(f'train/loss_{name}_')
                    for name in names)]
    return float(sum(parts) / scalars['train/loss'].mean(SHARE_WINDOW))


def train(task: Task, config: str, work_dir: str, data_root: str, length: int, seed: int,
          **overrides) -> dict:
    """Train ``config`` with MMEngine's Runner, then validate once; return the metric,
    timings, the distillation share of the loss and the final checkpoint."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({
        **task.data_overrides(data_root),
        **task.schedule_overrides(length),
        'train_cfg.val_begin': length + 1,  # no validation inside train(): timed apart
        'randomness.seed': seed,
        **overrides,
    })
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    metrics = runner.val_loop.run()
    if not metrics and task.metric.startswith('coco/'):
        metrics = {task.metric: 0.0}  # CocoMetric returns nothing when no box passes score_thr
    losses = cfg.model.get('distill_losses') or {}
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    return dict(metric=float(metrics[task.metric]), seconds=seconds,
                ms_per_iter=1000 * seconds / runner.iter,
                share=distill_share(runner, losses) if losses else 0.0,
                checkpoint=checkpoint)


def summary_row(name: str, runs: list) -> str:
    values = np.array([r['metric'] for r in runs])
    spread = f' ± {values.std(ddof=1):.3f}' if len(runs) > 1 else ''
    share = np.mean([r['share'] for r in runs])
    return (f'| {name:<8} | {len(runs):>5} | {values.mean():>7.3f}{spread:<8} | '
            f'{" ".join(f"{v:.3f}" for v in values):<23} | '
            f'{np.mean([r["seconds"] for r in runs]):>14.1f} | '
            f'{np.mean([r["ms_per_iter"] for r in runs]):>12.1f} | {share:>13.4f} |')


def print_table(task: Task, length: int, teacher_length: int, results: dict) -> None:
    print(f'\n{task.summary}; students {length} {task.unit}, teacher {teacher_length}; CPU, '
          f'{torch.get_num_threads()} thread(s).')
    print(f'| {"model":<8} | {"seeds":>5} | {task.metric_name + " mean ± std":<16} | '
          f'{"per seed":<23} | {"train time (s)":>14} | {"ms/iteration":>12} | '
          f'{"distill share":>13} |')
    print(f'| {"-" * 8} | {"-" * 5} | {"-" * 16} | {"-" * 23} | {"-" * 14} | {"-" * 12} | '
          f'{"-" * 13} |')
    for name, runs in results.items():
        print(summary_row(name, runs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', required=True, choices=list(TASKS))
    parser.add_argument('--methods', nargs='+',
                        help='how to train the student (default: all of the task\'s)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, help='detection schedule length')
    parser.add_argument('--iters', type=int, help='segmentation schedule length')
    parser.add_argument('--work-dir', help='default: work_dirs/dense_<task>')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (default 1: on shared cores, more threads '
                        'wait on each other and make the timings erratic)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = TASKS[args.task]
    methods = args.methods or list(task.methods)
    unknown = [m for m in methods if m not in task.methods]
    if unknown:
        parser.error(f'--task {args.task} has methods {list(task.methods)}, not {unknown}')
    wrong_length = args.iters if task.unit == 'epochs' else args.epochs
    if wrong_length is not None:
        parser.error(f'--task {args.task} trains by {task.unit}: use --{task.unit}')
    length = getattr(args, task.unit) or (max(task.length // 4, 1) if CI else task.length)
    work_dir = args.work_dir or f'work_dirs/dense_{args.task}'

    data_root = osp.join(work_dir, 'data')
    metainfo = task.write_data(data_root)
    configured = Config.fromfile(osp.join(CONFIGS, task.methods['student'])).metainfo
    if tuple(configured['classes']) != metainfo['classes']:
        raise RuntimeError(f'the configs name the classes {configured["classes"]}, the '
                           f'generated data {metainfo["classes"]}: make them agree')

    teacher_length = task.teacher_factor * length
    print(f'\n===== training the teacher ({task.teacher}, {teacher_length} {task.unit}) =====',
          flush=True)
    teacher = train(task, task.teacher, osp.join(work_dir, 'teacher'), data_root,
                    teacher_length, seed=0)
    results = {'teacher': [teacher]}
    for method in methods:
        config = task.methods[method]
        overrides = {} if method == 'student' else {
            'model.teacher.checkpoint': teacher['checkpoint']}
        results[method] = []
        for seed in args.seeds:
            print(f'\n===== training the student: {method} ({config}, seed {seed}, {length} '
                  f'{task.unit}) =====', flush=True)
            results[method].append(
                train(task, config, osp.join(work_dir, f'{method}_seed{seed}'), data_root,
                      length, seed, **overrides))
    print_table(task, length, teacher_length, results)


if __name__ == '__main__':
    main()
