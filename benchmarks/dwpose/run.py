"""DWPose's two stages on synthetic stick figures, end to end.

    python benchmarks/dwpose/run.py [--seeds S ...] [--teacher-seeds S ...]
                                  [--teacher-checkpoint PTH] [--epochs N] [--teacher-epochs N]
                                  [--work-dir DIR] [--threads N] [--record]

1. writes 400 images of stick figures (300 train / 100 val, 128×96) with the 17 COCO body
   keypoints in COCO's person-keypoint format, so that mmpose's CocoDataset, top-down
   pipeline, SimCC codec and CocoMetric run as they do on COCO;
2. trains, with MMEngine's Runner and the configs in ``configs/`` (mmpose's RTMPose recipes
   at a 64×96 input), the teacher (RTMPose-s, twice the epochs) at each teacher seed, then
   for each seed the student (RTMPose-t) alone, DWPose stage 1 (RTMPose-t ← RTMPose-s) and,
   on each exported stage-1 student, stage 2 (head-aware self-distillation, 20% of stage 1's
   epochs);
3. saves the results (``benchmarks.evidence``: ``<work-dir>/results.json``, with ``--record``
   also ``results/stick_figures.json``) and prints COCO AP (mean ± std over the seeds, the
   paired per-seed differences against the student alone), train time and time per iteration.

With CI=true the schedule is shorter (4 epochs instead of 8), never skipped.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional

import torch
from mmengine.config import Config

if __package__ in (None, ''):  # run as a file: the repository's packages are importable
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import mmdistill  # noqa: F401
from mmdistill.apis import export_student
from benchmarks.evidence import (Results, add_recording_arguments, file_fingerprint, publish,
                                 train_run)
from mmdistill.testing import write_coco_keypoints

HERE = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(HERE, 'configs')
TEACHER = 'rtmpose-s_stick-figures-64x96.py'
STUDENT = 'rtmpose-t_stick-figures-64x96.py'
STAGE1 = 's1_dwpose_s-to-t_stick-figures-64x96.py'
STAGE2 = 's2_dwpose_t_stick-figures-64x96.py'
TEACHER_ROW = 'teacher RTMPose-s'
STUDENT_ALONE = 'student RTMPose-t alone'
STAGE1_ROW = 'stage 1 (t ← s)'
STAGE2_ROW = 'stage 1 + stage 2'
STAGE2_FRACTION = 0.2  # DWPose: stage 2 trains for about 20% of stage 1's epochs
NUM_IMAGES, NUM_VAL, IMAGE_SIZE = 400, 100, (128, 96)


def schedule(cfg: Config, epochs: int) -> dict:
    """Overrides that stretch the config's schedule to ``epochs``, its cosine decay over the
    second half."""
    scheduler = [dict(s, begin=epochs // 2, end=epochs, T_max=epochs - epochs // 2)
                 if s['type'] == 'CosineAnnealingLR' else s for s in cfg.param_scheduler]
    return {'train_cfg.max_epochs': epochs, 'param_scheduler': scheduler}


def train(config: str, work_dir: str, data_root: str, epochs: int, seed: int,
          teacher: Optional[dict] = None, **overrides) -> dict:
    """Train ``config`` for ``epochs`` (distilling from ``teacher``: a run's ``checkpoint`` and
    ``fingerprint``) and validate once with :func:`~benchmarks.evidence.train_run` (a run of
    the same fingerprint is read from its work dir); return COCO AP (``metric``),
    timings and the checkpoint."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({
        **schedule(cfg, epochs),
        'default_hooks.checkpoint.interval': epochs,
        'val_evaluator.ann_file': osp.join(data_root, 'annotations', 'val.json'),
        'randomness.seed': seed,
        **({'model.teacher.checkpoint': teacher['checkpoint']} if teacher else {}),
        **overrides,
    })
    return train_run(cfg, 'coco/AP', data_root, CONFIGS, [teacher] if teacher else [])


def add(results: Results, model: str, seed: int, run: dict, **extra) -> None:
    """Add one training run of ``train`` to ``results``."""
    results.add(model, seed, run['metric'], train_seconds=run['seconds'],
                ms_per_iter=run['ms_per_iter'], **extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='*', default=[0, 1, 2],
                        help='seeds of the students (none: only the teacher)')
    parser.add_argument('--teacher-seeds', type=int, nargs='+', default=[0],
                        help='seeds of the teacher; the students distil from the first')
    parser.add_argument('--teacher-checkpoint',
                        help='distil from this checkpoint of the first --teacher-seeds teacher '
                        '(trained by an earlier run) instead of training the teachers')
    parser.add_argument('--epochs', type=int,
                        default=4 if os.environ.get('CI') == 'true' else 8,
                        help='epochs of the student alone and of stage 1')
    parser.add_argument('--teacher-epochs', type=int,
                        help="the teacher's epochs (default: twice --epochs)")
    parser.add_argument('--work-dir', default='work_dirs/dwpose_stick_figures')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (default 1: at batch 10 and a 64×96 input more '
                        'threads gain little and, on shared cores, cost several times over)')
    add_recording_arguments(parser)
    args = parser.parse_args()
    if args.teacher_checkpoint and not osp.isfile(args.teacher_checkpoint):
        parser.error(f'--teacher-checkpoint {args.teacher_checkpoint} does not exist: train the '
                     'teacher first (--teacher-seeds 0 --seeds) or leave the option out')
    torch.set_num_threads(args.threads)
    teacher_epochs = args.teacher_epochs or 2 * args.epochs
    stage2_epochs = max(1, round(STAGE2_FRACTION * args.epochs))

    results = Results(
        table='stick_figures', metric='COCO AP', baseline=STUDENT_ALONE,
        compared=[STAGE1_ROW, STAGE2_ROW], also_paired=[[STAGE2_ROW, STAGE1_ROW]],
        description=(
            f'Stick figures: {NUM_IMAGES - NUM_VAL} train / {NUM_VAL} val images, input 64×96, '
            f'batch 10, from scratch, CPU; {args.epochs} epochs (teacher {teacher_epochs}, '
            f'stage 2 {stage2_epochs} more on top of stage 1); stage 1 distils from the '
            f'seed-{args.teacher_seeds[0]} teacher. Stage-2 row: AP after stage 2, time of '
            'stage 2 alone. Δ: the row minus the student alone at the same seed (second table: '
            'stage 2 against the stage-1 model it starts from). Train time: the wall time of '
            'training, checkpoints included, validation left out (records made before '
            '2026-12-06: the sum of the iteration times, checkpoints left out too).'))
    results.start_run()

    data_root = osp.join(args.work_dir, 'data')
    if not osp.isfile(osp.join(data_root, 'annotations', 'val.json')):
        write_coco_keypoints(data_root, num_images=NUM_IMAGES, num_val=NUM_VAL,
                             size=IMAGE_SIZE, seed=0)
    teacher = None  # the run (checkpoint, fingerprint) the students distil from
    if args.teacher_checkpoint:
        teacher = dict(checkpoint=args.teacher_checkpoint,
                       fingerprint=file_fingerprint(args.teacher_checkpoint))
    else:
        for seed in args.teacher_seeds:
            print(f'\n===== teacher ({TEACHER}, {teacher_epochs} epochs, seed {seed}) =====',
                  flush=True)
            run = train(TEACHER, osp.join(args.work_dir, f'teacher_seed{seed}'), data_root,
                        teacher_epochs, seed)
            add(results, TEACHER_ROW, seed, run, epochs=teacher_epochs)
            teacher = teacher or run
            publish(results, args.work_dir, HERE, args.record, echo=False)
    for seed in args.seeds:
        print(f'\n===== student alone ({STUDENT}, seed {seed}) =====', flush=True)
        add(results, STUDENT_ALONE, seed, train(
            STUDENT, osp.join(args.work_dir, f'student_seed{seed}'), data_root, args.epochs,
            seed), epochs=args.epochs)
        print(f'\n===== stage 1 ({STAGE1}, seed {seed}) =====', flush=True)
        work_dir = osp.join(args.work_dir, f's1_seed{seed}')
        stage1 = train(STAGE1, work_dir, data_root, args.epochs, seed, teacher)
        add(results, STAGE1_ROW, seed, stage1, epochs=args.epochs,
            teacher=teacher['checkpoint'])
        exported, _ = export_student(osp.join(work_dir, STAGE1), stage1['checkpoint'],
                                     osp.join(work_dir, 'export'))
        print(f'\n===== stage 2 ({STAGE2}, seed {seed}, {stage2_epochs} epochs) =====',
              flush=True)
        # Stage 2 keeps the student's schedule (epochs) cut short to stage2_epochs, as
        # DWPose's stage-2 configs do.
        # The stage-1 student is stage 2's teacher: its export stands for the stage-1 run.
        stage1_student = dict(checkpoint=exported, fingerprint=stage1['fingerprint'])
        add(results, STAGE2_ROW, seed, train(
            STAGE2, osp.join(args.work_dir, f's2_seed{seed}'), data_root, args.epochs, seed,
            stage1_student, **{'train_cfg.max_epochs': stage2_epochs,
                               'default_hooks.checkpoint.interval': stage2_epochs}),
            epochs=stage2_epochs)
        # saved after every seed, so an interrupted run keeps what it finished
        publish(results, args.work_dir, HERE, args.record, echo=False)
    publish(results, args.work_dir, HERE, args.record)


if __name__ == '__main__':
    main()
