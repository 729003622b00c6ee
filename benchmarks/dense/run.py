"""Evidence runs for dense prediction: FGD and MGD on generated detection data, MGD on generated
segmentation data, end to end with the codebases' own datasets, pipelines and metrics.

    python benchmarks/dense/run.py --task det|seg [--methods ...] [--seeds 0 1 2]
        [--teacher-seeds 0 1 2] [--epochs N | --iters N] [--teacher-length N]
        [--work-dir DIR]

1. writes the generated data in the codebase's own format: COCO json + PNG images for mmdet
   (``mmdistill.testing.write_coco_detection``, object scales spread over every FPN level;
   the positive anchors per level that mmdet's own assigner gives them are printed),
   mmseg's ``img_dir``/``ann_dir`` layout for mmseg (``mmdistill.testing.write_seg_dataset``);
2. trains the teacher once per teacher seed (twice the students' schedule, or
   ``--teacher-length``), then
   the student alone and with each method, once per seed, distilling from the seed-0 teacher,
   each with MMEngine's Runner and the configs in ``configs/``;
3. prints the evidence table (``benchmarks.evidence``): box mAP (``coco/bbox_mAP``) or mIoU
   per seed, mean ± sample std, each method's paired per-seed difference from the student
   alone, the distillation losses' share of the student's total loss over the last
   iterations, train time and ms per iteration; then each run's loss profile (the student's
   own loss and each distillation loss, early and late in training, and the gradient norm
   before clipping), which its records carry. It is saved to ``<work-dir>/results.json`` and,
   with ``--record``, to ``benchmarks/dense/results/<table>.json``, which the README renders
   (``benchmarks/render.py``; the profile as a ``details: profile`` block).

Each run leaves ``result.json`` in its work dir, stamped with a fingerprint of its merged
config, its data's arguments and its teacher's fingerprint (paths left out); a later command
that asks for the same run, from any checkout and however ``--work-dir`` is spelt, reads it
instead of training again, so a long job can be split over processes and summed up by one more
command.

With CI=true the default schedule is a quarter as long (a smoke run, never skipped).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.structures import InstanceData

if __package__ in (None, ''):  # run as a file: the repository's packages are importable
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import mmdistill  # noqa: F401
from benchmarks.evidence import (Results, add_recording_arguments, publish, render_details,
                                 run_fingerprint, train_and_validate)
from mmdistill.testing import write_coco_detection, write_seg_dataset

HERE = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(HERE, 'configs')
CI = os.environ.get('CI') == 'true'
SHARE_WINDOW = 20  # iterations over which the distillation losses' share is averaged
EARLY, LATE = 10, 50  # iterations over which the loss profile's early and late means are taken


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
    data_arguments: dict  # what ``write_data`` is called with, besides the root
    write_data: Callable[..., dict]
    data_overrides: Callable[[str], dict]
    schedule_overrides: Callable[[int], dict]
    base_losses: tuple  # the student's own losses, in the logs
    default_methods: tuple = ()  # what --methods defaults to (() for all of ``methods``)
    also_paired: tuple = ()  # further (model, baseline) pairs, each in its own table


# ------------------------------------------------------------------------------ detection
DET_IMAGES, DET_VAL, DET_SIZE, DET_CLASSES = 260, 100, (160, 160), 3
DET_SCALES, DET_MAX_OBJECTS = (10, 150), 4  # object scales sqrt(w*h), log-uniform, in pixels


def det_data(root: str) -> dict:
    root = root.rstrip('/') + '/'
    return {
        'data_root': root,  # the config's own variable too: the merged config names one root
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


def positives_per_level(cfg: Config, ann_file: str) -> List[int]:
    """The positive anchors per FPN level that the config's own anchor generator and assigner
    (mmdet's ``MaxIoUAssigner`` in RetinaNet) give the boxes of a COCO ``ann_file``, summed
    over its images (each at its own size: the pipelines here do not rescale)."""
    from mmdet.registry import TASK_UTILS
    with open(ann_file) as f:
        coco = json.load(f)
    boxes = {image['id']: [] for image in coco['images']}
    for annotation in coco['annotations']:
        x, y, w, h = annotation['bbox']
        boxes[annotation['image_id']].append([x, y, x + w, y + h])
    with DefaultScope.overwrite_default_scope('mmdet'):
        anchors = TASK_UTILS.build(cfg.model.bbox_head.anchor_generator)
        assigner = TASK_UTILS.build(cfg.model.train_cfg.assigner)
    counts = np.zeros(anchors.num_levels, dtype=int)
    for image in coco['images']:
        if not boxes[image['id']]:
            continue
        sizes = [(-(-image['height'] // int(stride[1])), -(-image['width'] // int(stride[0])))
                 for stride in anchors.strides]
        priors = anchors.grid_priors(sizes, device='cpu')
        level = torch.cat([torch.full((len(p), ), i) for i, p in enumerate(priors)])
        gt = torch.tensor(boxes[image['id']], dtype=torch.float32)
        assigned = assigner.assign(InstanceData(priors=torch.cat(priors)),
                                   InstanceData(bboxes=gt, labels=torch.zeros(len(gt)).long()))
        counts += np.bincount(level[assigned.gt_inds > 0].numpy(), minlength=anchors.num_levels)
    return counts.tolist()


def check_det_levels(cfg: Config, data_root: str) -> None:
    """Print the positives per FPN level in each split; fail if a level has none in training
    (the distillation terms there would only ever see background)."""
    for split in ('train', 'val'):
        counts = positives_per_level(cfg, osp.join(data_root, 'annotations', f'{split}.json'))
        print(f'positive anchors per level P3..P{2 + len(counts)} ({split}, mmdet\'s '
              f'{cfg.model.train_cfg.assigner.type}): {counts}', flush=True)
        if split == 'train' and min(counts) == 0:
            raise RuntimeError(f'no object is matched on FPN level(s) '
                               f'{[f"P{3 + i}" for i, c in enumerate(counts) if not c]}: '
                               'widen the object scales or change the anchors')


# ---------------------------------------------------------------------------- segmentation
SEG_TRAIN, SEG_VAL, SEG_SIZE, SEG_CLASSES = 200, 50, (64, 64), 4


def seg_data(root: str) -> dict:
    return {'data_root': root,  # the config's own variable too: the merged config names one root
            **{f'{split}_dataloader.dataset.data_root': root
               for split in ('train', 'val', 'test')}}


def seg_schedule(iters: int) -> dict:
    return {
        'train_cfg.max_iters': iters,
        'param_scheduler.0.end': iters,
        'default_hooks.checkpoint.interval': iters,
    }


TASKS = {
    'det': Task(
        summary=(f'Detection: generated COCO-format shapes, {DET_IMAGES - DET_VAL} train / '
                 f'{DET_VAL} val images of {DET_SIZE[0]}×{DET_SIZE[1]}, {DET_CLASSES} classes, '
                 f'object scales log-uniform in {DET_SCALES[0]}–{DET_SCALES[1]} px, anchors '
                 'scaled from COCO\'s; RetinaNet with a quarter-width ResNet-18 (student) or a '
                 'half-width ResNet-50 (teacher), 64-channel FPN and head, trained from '
                 'scratch with AdamW'),
        teacher='retinanet_r50_fpn_shapes-160.py',
        methods={'student': 'retinanet_r18_fpn_shapes-160.py',
                 'fgd': 'fgd_retinanet_r18_from_r50_shapes-160.py',
                 'mgd': 'mgd_retinanet_r18_from_r50_shapes-160.py'},
        metric='coco/bbox_mAP', metric_name='bbox mAP', unit='epochs', length=12,
        teacher_factor=2,
        data_arguments=dict(num_images=DET_IMAGES, size=DET_SIZE, num_classes=DET_CLASSES,
                            num_val=DET_VAL, max_objects=DET_MAX_OBJECTS,
                            scale_spread=DET_SCALES),
        write_data=write_coco_detection, data_overrides=det_data,
        schedule_overrides=det_schedule, base_losses=('loss_cls', 'loss_bbox')),
    'seg': Task(
        summary=(f'Segmentation: generated shapes in mmseg\'s folder layout, {SEG_TRAIN} train '
                 f'/ {SEG_VAL} val images of {SEG_SIZE[0]}×{SEG_SIZE[1]}, {SEG_CLASSES} classes '
                 '(background included); PSPNet-R18-d8 student, PSPNet-R34-d8 teacher, '
                 'trained from scratch with the recipe\'s SGD'),
        teacher='pspnet_r34-d8_shapes-64x64.py',
        methods={'student': 'pspnet_r18-d8_shapes-64x64.py',
                 'mgd': 'mgd_pspnet_r18_from_r34-d8_shapes-64x64.py',
                 # the recipe's ablation: each of its two terms alone
                 'mgd_feature_only': 'mgd-feature-only_pspnet_r18_from_r34-d8_shapes-64x64.py',
                 'mgd_logit_only': 'mgd-logit-only_pspnet_r18_from_r34-d8_shapes-64x64.py'},
        metric='mIoU', metric_name='mIoU (%)', unit='iters', length=300, teacher_factor=2,
        data_arguments=dict(num_train=SEG_TRAIN, num_val=SEG_VAL, size=SEG_SIZE,
                            num_classes=SEG_CLASSES),
        write_data=write_seg_dataset, data_overrides=seg_data,
        schedule_overrides=seg_schedule, base_losses=('decode.loss_ce', 'aux.loss_ce'),
        default_methods=('student', 'mgd'),
        also_paired=(('mgd', 'mgd_logit_only'), ('mgd', 'mgd_feature_only'))),
}


def write_data(task: Task, root: str) -> dict:
    """Write the task's data under ``root`` unless the same arguments already wrote it there;
    return its metainfo.

    The data go to a fresh folder first and are moved into place whole, so that a process
    that reads ``root`` (another part of the same job) never sees half-written files.
    """
    stamp_file = osp.join(root, 'written_by.json')
    if osp.exists(stamp_file):
        with open(stamp_file) as f:
            stamp = json.load(f)
        if stamp['arguments'] == json.loads(json.dumps(task.data_arguments)):
            metainfo = stamp['metainfo']
            return dict(metainfo, classes=tuple(metainfo['classes']),
                        palette=[tuple(colour) for colour in metainfo['palette']])
    fresh = f'{root}.{os.getpid()}'
    metainfo = task.write_data(fresh, **task.data_arguments)
    with open(osp.join(fresh, 'written_by.json'), 'w') as f:
        json.dump(dict(arguments=task.data_arguments, metainfo=metainfo), f)
    shutil.rmtree(root, ignore_errors=True)
    os.rename(fresh, root)
    return metainfo


# -------------------------------------------------------------------------------- running
def _history(runner: Runner, key: str) -> np.ndarray:
    return np.asarray(runner.message_hub.get_scalar(key).data[0], dtype=float)


def _loss_keys(runner: Runner, name: str) -> List[str]:
    """The logged keys of loss ``name`` (``loss_fgd1`` itself, or its parts ``loss_fgd1_*``)."""
    return [key for key in runner.message_hub.log_scalars
            if key == f'train/loss_{name}' or key.startswith(f'train/loss_{name}_')]


def distill_share(runner: Runner, names) -> float:
    """The distillation losses' share of the total training loss, averaged over the last
    ``SHARE_WINDOW`` iterations (0 for the student alone)."""
    scalars = runner.message_hub.log_scalars
    parts = [scalars[key].mean(SHARE_WINDOW) for name in names
             for key in _loss_keys(runner, name)]
    return float(sum(parts) / scalars['train/loss'].mean(SHARE_WINDOW))


def loss_profile(runner: Runner, task: Task, names) -> dict:
    """Where the objective stood early and late in training: the mean over the first
    ``EARLY`` and the last ``LATE`` iterations of the student's own losses and of each
    distillation loss (its parts summed), and the gradient norm before clipping (median,
    largest, and the share of iterations that clipping shortened) when it is logged."""
    def early_late(values: np.ndarray) -> List[float]:
        return [float(values[:EARLY].mean()), float(values[-LATE:].mean())]

    own = sum(_history(runner, f'train/{key}') for key in task.base_losses)
    profile = dict(task=early_late(own))
    for name in names:
        profile[name] = early_late(sum(_history(runner, key) for key in _loss_keys(runner, name)))
    if 'train/grad_norm' in runner.message_hub.log_scalars:
        norms = _history(runner, 'train/grad_norm')
        clip = runner.cfg.optim_wrapper.get('clip_grad') or {}
        profile['grad_norm'] = dict(
            median=float(np.median(norms)), max=float(norms.max()),
            clipped=float((norms > clip['max_norm']).mean()) if clip else 0.0)
    return profile


def run_config(task: Task, config: str, work_dir: str, data_root: str, length: int, seed: int,
               teacher: Optional[dict] = None, **overrides) -> Config:
    """``config`` merged with the run's work dir, data, schedule, seed and teacher checkpoint."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({
        **task.data_overrides(data_root),
        **task.schedule_overrides(length),
        'randomness.seed': seed,
        **({'model.teacher.checkpoint': teacher['checkpoint']} if teacher else {}),
        **overrides,
    })
    return cfg


def fingerprint(cfg: Config, task: Task, data_root: str, teacher: Optional[dict]) -> str:
    """What a run's result depends on: its merged config, the arguments its data were written
    with, and its teacher's fingerprint. Where the run reads and writes is left out (the work
    dir, the data root and the teacher checkpoint as spelt in the config, this checkout's
    config directory), so that a cache is found from another checkout and another spelling of
    ``--work-dir``."""
    places = {**({teacher['checkpoint']: '<teacher checkpoint>'} if teacher else {}),
              cfg.work_dir: '<work dir>', data_root: '<data root>', CONFIGS: '<configs>'}
    return run_fingerprint(cfg, places, [json.dumps(task.data_arguments, sort_keys=True),
                                         teacher['fingerprint'] if teacher else ''])


def train(task: Task, config: str, work_dir: str, data_root: str, length: int, seed: int,
          teacher: Optional[dict] = None, **overrides) -> dict:
    """Train ``config`` (distilling from ``teacher``'s checkpoint when given) and validate once
    (:func:`~benchmarks.evidence.train_and_validate`, which reads a run already made with the
    same fingerprint from its ``result.json``); return the metric, timings, the distillation
    share of the loss, the loss profile and the final checkpoint."""
    cfg = run_config(task, config, work_dir, data_root, length, seed, teacher, **overrides)
    losses = list(cfg.model.get('distill_losses') or {})

    def summarise(runner: Runner) -> dict:
        return dict(config=config, seed=seed,
                    share=distill_share(runner, losses) if losses else 0.0,
                    profile=loss_profile(runner, task, losses))

    return train_and_validate(
        cfg, task.metric, fingerprint(cfg, task, data_root, teacher), summarise,
        # mmdet's CocoMetric returns nothing when no box passes its score threshold
        missing_metric=0.0 if task.metric.startswith('coco/') else None)


# -------------------------------------------------------------------------------- tables
def table_name(name: str, task: Task, length: int, teacher_length: int) -> str:
    """The results table of a schedule: another schedule is another table (a results file holds
    one): ``det``, ``det_24epochs``, ``det_24epochs_teacher144``..."""
    table = name if length == task.length else f'{name}_{length}{task.unit}'
    if teacher_length != task.teacher_factor * length:
        table += f'_teacher{teacher_length}'
    return table


def evidence_table(table: str, task: Task, length: int, teacher_length: int,
                   runs: Dict[str, list]) -> Results:
    """The evidence table of ``runs`` (model -> its runs, one per seed): each record carries
    the provenance of the process that trained it; the distilled students are paired with the
    student alone, seed by seed."""
    results = Results(
        table=table, metric=task.metric_name, precision=3 if task.unit == 'epochs' else 2,
        description=(f'{task.summary}; students {length} {task.unit}, teacher '
                     f'{teacher_length}, the distilled students from the seed-0 teacher.'),
        # every method of the task, not only those run now: the saved table's metadata is the
        # last run's, and a run of some methods must not unpair the others already there
        baseline='student', compared=[m for m in task.methods if m != 'student'],
        also_paired=[list(pair) for pair in task.also_paired],
        columns=[dict(field='distill_share', header='distill share (last '
                      f'{SHARE_WINDOW} it.)', format='{:.3f}')])
    for model, model_runs in runs.items():
        for run in model_runs:
            results.start_run(run['provenance'])
            results.add(model, run['seed'], run['metric'], train_seconds=run['seconds'],
                        ms_per_iter=run['ms_per_iter'], distill_share=run['share'],
                        profile=run['profile'])
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', required=True, choices=list(TASKS))
    parser.add_argument('--methods', nargs='*',
                        help='how to train the student (default: the task\'s main ones, '
                        'det: student fgd mgd, seg: student mgd; seg also has mgd_feature_only '
                        'and mgd_logit_only; none to train only teachers)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--teacher-seeds', type=int, nargs='+', default=[0],
                        help='train a teacher per seed (the students distil from seed 0\'s)')
    parser.add_argument('--epochs', type=int, help='detection schedule length')
    parser.add_argument('--iters', type=int, help='segmentation schedule length')
    parser.add_argument('--teacher-length', type=int,
                        help='the teacher\'s schedule, in the task\'s unit (default: twice '
                        'the students\')')
    parser.add_argument('--work-dir', help='default: work_dirs/dense_<task>')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (default 1: on shared cores, more threads '
                        'wait on each other and make the timings erratic)')
    add_recording_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = TASKS[args.task]
    methods = list(task.default_methods or task.methods) if args.methods is None \
        else args.methods
    unknown = [m for m in methods if m not in task.methods]
    if unknown:
        parser.error(f'--task {args.task} has methods {list(task.methods)}, not {unknown}')
    wrong_length = args.iters if task.unit == 'epochs' else args.epochs
    if wrong_length is not None:
        parser.error(f'--task {args.task} trains by {task.unit}: use --{task.unit}')
    distilling = [m for m in methods if m != 'student']
    if distilling and 0 not in args.teacher_seeds:
        parser.error(f'{distilling} distil from the seed-0 teacher: put 0 in --teacher-seeds')
    length = getattr(args, task.unit) or (max(task.length // 4, 1) if CI else task.length)
    work_dir = args.work_dir or f'work_dirs/dense_{args.task}'

    data_root = osp.join(work_dir, 'data')
    metainfo = write_data(task, data_root)
    student_cfg = Config.fromfile(osp.join(CONFIGS, task.methods['student']))
    if tuple(student_cfg.metainfo['classes']) != tuple(metainfo['classes']):
        raise RuntimeError(f'the configs name the classes {student_cfg.metainfo["classes"]}, '
                           f'the generated data {metainfo["classes"]}: make them agree')
    if args.task == 'det':
        check_det_levels(student_cfg, data_root)

    teacher_length = args.teacher_length or task.teacher_factor * length
    teachers = {}
    for seed in sorted(args.teacher_seeds, key=lambda s: s != 0):  # seed 0 first: it teaches
        print(f'\n===== training the teacher ({task.teacher}, seed {seed}, {teacher_length} '
              f'{task.unit}) =====', flush=True)
        teachers[seed] = train(task, task.teacher, osp.join(work_dir, f'teacher_seed{seed}'),
                               data_root, teacher_length, seed)
    results = {'teacher': list(teachers.values())}
    for method in methods:
        config = task.methods[method]
        results[method] = []
        for seed in args.seeds:
            print(f'\n===== training the student: {method} ({config}, seed {seed}, {length} '
                  f'{task.unit}) =====', flush=True)
            results[method].append(
                train(task, config, osp.join(work_dir, f'{method}_seed{seed}'), data_root,
                      length, seed, teacher=None if method == 'student' else teachers[0]))
    table = table_name(args.task, task, length, teacher_length)
    evidence = evidence_table(table, task, length, teacher_length, results)
    publish(evidence, work_dir, HERE, args.record)
    print(f'\nLosses, mean of the first {EARLY} → last {LATE} iterations ("task": the '
          'student\'s own); gradient norm before clipping: median, largest, share of '
          'iterations clipped:\n' + render_details(evidence, 'profile'))


if __name__ == '__main__':
    main()
