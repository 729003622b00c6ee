"""The built-in example: distillation on scikit-learn's handwritten digits, end to end.

    python benchmarks/digits/run.py [--setup short|full|few] [--methods student kd ...]
                                  [--seeds 0 1 2] [--teacher-seeds 0 1 2] [--epochs N]
                                  [--work-dir DIR] [--record]

1. writes the 1797 digits as 32×32 PNG files in mmpretrain's CustomDataset layout
   (a stratified half for training, the other half for validation); the ``few`` set-up also
   writes a fixed subset of 10 training images per class;
2. trains each teacher the methods need (ResNet-18 width 16, or a ViT of width 64) on all 898
   training images at each teacher seed and at each seed a method distils from (seeds 0 and 1
   for ``kd_two_teachers``), then the student (ResNet-18 width 4, or a ViT of width 32) alone
   and with each distillation method asked for, at each seed, distilling from the seed-0
   teacher (or from the seed-0 and seed-1 teachers at once), each with MMEngine's Runner and
   the configs in ``configs/`` (``benchmarks.evidence.train_and_validate``: a run the work dir
   already holds, with the same fingerprint, is read instead of trained again);
3. saves every run with its provenance (``benchmarks.evidence``) to
   ``<work-dir>/<table>/results.json`` (with ``--record`` also to the committed
   ``benchmarks/digits/results/<table>.json`` that the README renders): tables ``teachers``,
   ``<setup>`` (the ResNet student) and ``<setup>_vit`` (the ViT student); and prints them:
   top-1 per seed, mean ± std, each method's paired per-seed difference to the student
   alone at the same seed, train time and time per iteration.

By default it runs the main job on the ``short`` set-up (10 student epochs): teacher, student
alone and student + classic KD, seed 0; about two minutes on two cores. With CI=true the
teacher's schedule is shorter too (10 epochs instead of 30).
"""
import argparse
import glob
import os
import os.path as osp
import shutil
import sys
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from mmengine.config import Config

if __package__ in (None, ''):  # run as a file: the repository's packages are importable
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import mmdistill  # noqa: F401
from benchmarks.evidence import Results, add_recording_arguments, publish, train_run

HERE = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(HERE, 'configs')
TEACHERS = {'resnet': 'teacher_resnet18.py', 'deit': 'teacher_deit_p4.py'}
# Where the seed-0 teachers are saved (the distillation configs' default checkpoints).
TEACHER_DIRS = {'resnet': 'teacher', 'deit': 'teacher_deit'}
# What the student is trained with -> its config. Every config but the students alone and the
# teacher-free methods (WITHOUT_TEACHER) distils.
METHODS = {
    'student': 'student_resnet18_w4.py',
    'kd': 'kd_resnet18_w4_from_resnet18.py',
    'nkd': 'nkd_resnet18_w4_from_resnet18.py',
    'tf_nkd': 'tf-nkd_resnet18_w4.py',
    'uskd': 'uskd_resnet18_w4.py',
    'mgd': 'mgd_resnet18_w4_from_resnet18.py',
    'kd_two_teachers': 'kd_resnet18_w4_from_two_resnet18.py',
    'kd_bf16': 'kd_resnet18_w4_from_resnet18.py',
    'deit_student': 'student_deit_p4.py',
    'vitkd': 'vitkd_deit_p4_from_deit_p4.py',
    'vitkd_nkd': 'vitkd-nkd_deit_p4_from_deit_p4.py',
}
# Methods that are another's config with options: KD from the teacher in bfloat16.
OPTIONS = {'kd_bf16': {'model.teacher.dtype': 'bfloat16'}}
# Which teacher checkpoint (by the seed its teacher was trained with) goes to which config
# key: one teacher, seed 0, unless the method distils from several.
TEACHER_CHECKPOINTS = {'kd_two_teachers': {'model.teachers.a.checkpoint': 0,
                                           'model.teachers.b.checkpoint': 1}}
ONE_TEACHER = {'model.teacher.checkpoint': 0}
WITHOUT_TEACHER = ('student', 'uskd', 'tf_nkd', 'deit_student')
# The ViT methods: their teacher is the ViT teacher, their baseline the ViT student alone.
VIT_METHODS = ('deit_student', 'vitkd', 'vitkd_nkd')
MAIN_JOB = ('student', 'kd')
# Training images the student sees and for how long: all of the training half for 10 epochs
# (the main job: the student alone has not converged, the teacher's soft targets show) or 30,
# or a fixed subset of 10 per class, on which the student alone is far from saturated.
# Teachers always see all of them.
SETUPS = {
    'short': dict(train_prefix='train', epochs=10, ci_epochs=10),
    'full': dict(train_prefix='train', epochs=30, ci_epochs=10),
    'few': dict(train_prefix='train_10', per_class=10, epochs=100, ci_epochs=100),
}
# Teacher schedules (epochs over the 898 training images); the ResNet's follows the full
# set-up's (10 with CI=true), the ViT needs more to converge on every seed.
TEACHER_EPOCHS = {'resnet': None, 'deit': 60}


_RESNET_TEACHER = ' from the seed-0 teacher ResNet-18 width 16 (trained on all 898 images)'
_VIT_TEACHER = ' from the seed-0 teacher ViT width 64, 4 layers (trained on all 898 images)'
_TWO_TEACHERS = (' (kd_two_teachers: KD towards the mean of the logits of the seed-0 and seed-1 '
                 'teachers, also paired with KD from the seed-0 teacher alone)')
_UNTUNED = ('No method\'s weights were tuned to this data (KD τ=4; NKD T=3, γ=3.5; USKD and '
            'MGD as in their digits configs; ViTKD α=3e-5, β=3e-6, λ=0.5; NKD beside ViTKD '
            'T=1, γ=1).')
# Results tables (one baseline each: ResNet methods pair with `student`, ViT methods with
# `deit_student`) and their descriptions.
TABLES = {
    'teachers': 'The teachers the digits students distil from, each trained on all 898 '
    'training images: ResNet-18 width 16 (0.7 M parameters; SGD, cosine decay) and a ViT of '
    'width 64, 4 layers, 2 heads, 4×4 patches (0.2 M parameters; AdamW, 5 warm-up epochs, '
    'cosine decay). Top-1 on the 899 validation images over the teacher seeds; the students '
    'distil from seed 0.',
    'short': 'The main job: the student ResNet-18 width 4 (45 k parameters) trained on all '
    '898 training images for only 10 epochs, alone and with each method' + _RESNET_TEACHER +
    '; top-1 on the 899 validation images (one image is 0.11 points), each method paired with '
    'the student alone at the same seed.',
    'full': 'The quick example at 30 epochs: the student ResNet-18 width 4 (45 k parameters) '
    'trained on all '
    '898 training images, alone and with each method' + _RESNET_TEACHER + _TWO_TEACHERS +
    '; top-1 on the 899 validation images (one image is 0.11 points), each method paired with '
    'the student alone at the same seed.',
    'full_vit': 'The ViT student (width 32, 4 layers, 4×4 patches, 55 k parameters) trained on '
    'all 898 training images, alone and with ViTKD' + _VIT_TEACHER + '; top-1 on the 899 '
    'validation images, each method paired with the ViT student alone at the same seed.',
    'few': 'The harder set-up: the student ResNet-18 width 4 (45 k parameters) sees a fixed '
    'subset of 10 training images per class (100 images; 100 epochs, 400 iterations), alone '
    'and with each method' + _RESNET_TEACHER + _TWO_TEACHERS + '; top-1 on the 899 validation '
    'images (one image is 0.11 points), each method paired with the student alone at the same '
    'seed. ' + _UNTUNED,
    'few_vit': 'The harder set-up for the ViTs: the ViT student (width 32, 4 layers, 4×4 '
    'patches, 55 k parameters) sees the same 10 training images per class (100 epochs, 400 '
    'iterations), alone and with ViTKD and ViTKD + NKD' + _VIT_TEACHER + '; top-1 on the 899 '
    'validation images, each method paired with the ViT student alone at the same seed. ' +
    _UNTUNED,
}


def write_digits(root: str, seed: int = 0, limit: int = None) -> None:
    """Write the digits as PNG files: ``root/{train,val}/<class>/<index>.png``.

    ``limit`` keeps only the first ``limit`` digits (for tests).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    indices = np.arange(len(images) if limit is None else limit)
    train, val = train_test_split(indices, test_size=0.5, stratify=digits.target[indices],
                                  random_state=seed)
    for split, chosen in (('train', train), ('val', val)):
        for i in chosen:
            folder = osp.join(root, split, str(digits.target[i]))
            os.makedirs(folder, exist_ok=True)
            image = cv2.resize(images[i], (32, 32), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(osp.join(folder, f'{i:04d}.png'), image)


def write_subset(root: str, prefix: str, per_class: int, seed: int = 0) -> None:
    """Copy ``per_class`` training images of each class, drawn with ``seed``, from
    ``root/train`` to ``root/<prefix>``: the same subset for every training seed."""
    rng = np.random.default_rng(seed)
    for folder in sorted(glob.glob(osp.join(root, 'train', '*'))):
        files = sorted(glob.glob(osp.join(folder, '*.png')))
        if len(files) < per_class:
            raise ValueError(f'{folder} holds {len(files)} images, fewer than the '
                             f'{per_class} per class asked for')
        target = osp.join(root, prefix, osp.basename(folder))
        os.makedirs(target, exist_ok=True)
        for name in rng.choice(files, per_class, replace=False):
            shutil.copy(name, target)


def schedule_overrides(cfg: Config, epochs: int) -> dict:
    """Overrides that stretch the config's learning-rate schedule to ``epochs``: a single
    cosine decay, or warm-up epochs followed by one."""
    if isinstance(cfg.param_scheduler, dict):
        return {'param_scheduler.T_max': epochs}
    schedulers = [dict(s) for s in cfg.param_scheduler]
    cosine = schedulers[-1]
    if cosine['type'] != 'CosineAnnealingLR' or cosine['begin'] >= epochs:
        raise ValueError(f'cannot stretch {cfg.param_scheduler} to {epochs} epochs: the last '
                         'scheduler must be a cosine decay that begins before the end')
    cosine.update(T_max=epochs - cosine['begin'], end=epochs)
    return {'param_scheduler': schedulers}


def train(config: str, work_dir: str, data_root: str, epochs: int, seed: int,
          starts_from: Sequence[dict] = (), retrain: bool = False, **overrides) -> dict:
    """Train ``config`` for ``epochs`` and validate once with
    :func:`~benchmarks.evidence.train_run` (a run of the same fingerprint is read from its work
    dir unless ``retrain``); ``starts_from`` are the runs whose checkpoints ``overrides`` give it
    (teachers, the model it fine-tunes). Returns top-1 (``metric``), timings and the
    checkpoint."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({
        'train_cfg.max_epochs': epochs,
        'default_hooks.checkpoint.interval': epochs,
        'randomness.seed': seed,
        **schedule_overrides(cfg, epochs),
        **overrides,
    })
    return train_run(cfg, 'accuracy/top1', data_root, CONFIGS, starts_from, retrain=retrain)


def table_of(setup: str, method: str) -> str:
    """The results table a method's runs on a set-up go to."""
    return setup + ('_vit' if method in VIT_METHODS else '')


def teacher_of(method: str) -> str:
    """The architecture of the teacher(s) a distillation method distils from."""
    return 'deit' if method in VIT_METHODS else 'resnet'


def teachers_to_train(methods: List[str], teacher_seeds: List[int]) -> Dict[str, List[int]]:
    """Architecture -> the seeds to train its teacher with: those asked for, and every seed a
    method distils from."""
    seeds = {}
    for method in methods:
        if method not in WITHOUT_TEACHER:
            seeds.setdefault(teacher_of(method), set(teacher_seeds)).update(
                TEACHER_CHECKPOINTS.get(method, ONE_TEACHER).values())
    return {name: sorted(seeds[name]) for name in sorted(seeds)}


def teacher_checkpoint_overrides(method: str, teachers: Dict[Tuple[str, int], str]) -> dict:
    """Config overrides giving ``method``'s distiller its teachers' checkpoints (``teachers``:
    (architecture, seed) -> checkpoint); none for a method without a teacher."""
    if method in WITHOUT_TEACHER:
        return {}
    return {key: teachers[teacher_of(method), seed]
            for key, seed in TEACHER_CHECKPOINTS.get(method, ONE_TEACHER).items()}


def new_table(table: str) -> Results:
    """An empty results table of the digits (a name of ``TABLES``)."""
    baseline = None if table == 'teachers' else (
        'deit_student' if table.endswith('_vit') else 'student')
    compared = [] if baseline is None else [
        method for method in METHODS if method != baseline and
        ('deit_student' if method in VIT_METHODS else 'student') == baseline]
    also_paired = [['kd_two_teachers', 'kd']] if 'kd_two_teachers' in compared else []
    return Results(table=table, metric='top-1 (%)', precision=2, baseline=baseline,
                   compared=compared, also_paired=also_paired, description=TABLES[table],
                   columns=[dict(field='epochs', header='epochs', format='{:.0f}')])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--setup', default='short', choices=list(SETUPS),
                        help='the students\' training images and epochs: all 898 for 10 '
                        '(short) or 30 (full) epochs, or 10 per class (few)')
    parser.add_argument('--methods', nargs='+', default=list(MAIN_JOB), choices=list(METHODS),
                        help='how to train the student (default: the main job)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='the seeds of the students\' runs')
    parser.add_argument('--teacher-seeds', type=int, nargs='+', default=[0],
                        help='the seeds of the teachers\' runs (students distil from seed 0)')
    parser.add_argument('--retrain-teachers', action='store_true',
                        help='train the teachers again even where the work dir holds their '
                        'checkpoints (by default those are reused)')
    parser.add_argument('--epochs', type=int, help='student epochs (default: the set-up\'s)')
    parser.add_argument('--work-dir', default='work_dirs/digits')
    add_recording_arguments(parser)
    args = parser.parse_args()
    ci = os.environ.get('CI') == 'true'
    setup = SETUPS[args.setup]
    epochs = args.epochs or setup['ci_epochs' if ci else 'epochs']
    full_epochs = SETUPS['full']['ci_epochs' if ci else 'epochs']

    data_root = osp.join(args.work_dir, 'data')
    if not osp.isdir(osp.join(data_root, 'val')):
        write_digits(data_root)
    if not osp.isdir(osp.join(data_root, setup['train_prefix'])):
        write_subset(data_root, setup['train_prefix'], setup['per_class'])
    tables = {name: new_table(name) for name in
              {'teachers'} | {table_of(args.setup, method) for method in args.methods}}
    for results in tables.values():
        results.start_run()

    def record(table: str, model: str, seed: int, run: dict, **extra) -> None:
        results = tables[table]
        results.add(model, seed, run['metric'], train_seconds=run['seconds'],
                    ms_per_iter=run['ms_per_iter'], **extra)
        publish(results, osp.join(args.work_dir, table), HERE, args.record, echo=False)

    teachers = {}  # (architecture, seed) -> the teacher's run
    for name, seeds in teachers_to_train(args.methods, args.teacher_seeds).items():
        teacher_epochs = TEACHER_EPOCHS[name] or full_epochs
        for seed in seeds:
            work_dir = osp.join(args.work_dir, TEACHER_DIRS[name] + ('' if seed == 0 else
                                                                     f'_seed{seed}'))
            print(f'\n===== the teacher ({TEACHERS[name]}, seed {seed}, {teacher_epochs} '
                  'epochs, all training images) =====', flush=True)
            run = train(TEACHERS[name], work_dir, data_root, teacher_epochs, seed,
                        retrain=args.retrain_teachers)
            if not run['cached']:  # a teacher read from its work dir was recorded when trained
                record('teachers', f'teacher_{name}', seed, run, epochs=teacher_epochs)
            teachers[name, seed] = run

    for method in args.methods:
        checkpoints = teacher_checkpoint_overrides(
            method, {key: run['checkpoint'] for key, run in teachers.items()})
        used = [run for run in teachers.values() if run['checkpoint'] in checkpoints.values()]
        overrides = {'train_dataloader.dataset.data_prefix': setup['train_prefix'],
                     **OPTIONS.get(method, {}), **checkpoints}
        for seed in args.seeds:
            print(f'\n===== training the student: {method} ({METHODS[method]}, seed {seed}, '
                  f'{epochs} epochs, set-up {args.setup}) =====', flush=True)
            work_dir = osp.join(args.work_dir, f'{args.setup}_{method}_seed{seed}')
            run = train(METHODS[method], work_dir, data_root, epochs, seed, used, **overrides)
            record(table_of(args.setup, method), method, seed, run, epochs=epochs)

    for results in tables.values():
        if results.records:
            publish(results, osp.join(args.work_dir, results.table), HERE, args.record)


if __name__ == '__main__':
    main()
