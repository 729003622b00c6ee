"""The built-in example: distillation on scikit-learn's handwritten digits, end to end.

    python projects/digits/run.py [--setup full|few] [--methods student kd ...] [--seeds N]
                                  [--teacher-seeds N] [--epochs N] [--record]

1. writes the 1797 digits as 32×32 PNG files in mmpretrain's CustomDataset layout
   (a stratified half for training, the other half for validation); the ``few`` set-up also
   writes a fixed subset of 10 training images per class;
2. trains each teacher the methods need (ResNet-18 width 16, or a ViT of width 64) on all 898
   training images, once per teacher seed (reusing a teacher checkpoint the work dir already
   holds), then the student (ResNet-18 width 4, or a ViT of
   width 32) alone and with each distillation method asked for, once per seed, distilling
   from the seed-0 teacher, each with MMEngine's Runner and the configs in ``configs/``;
3. prints top-1 accuracy (mean ± std over the seeds), the paired per-seed difference of each
   method to the student alone at the same seed, train time and time per iteration, and
   writes every run to ``<work-dir>/results.json`` (with ``--record`` also to the committed
   ``projects/digits/results/<setup>.json``).

By default it runs the main job on the ``full`` set-up: teacher, student alone and student +
classic KD, one seed. With CI=true that schedule is shorter (10 epochs instead of 30).
"""
import argparse
import datetime
import glob
import json
import os
import os.path as osp
import platform
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import mmdistill  # noqa: F401

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
    'kd_bf16': 'kd_resnet18_w4_from_resnet18.py',
    'deit_student': 'student_deit_p4.py',
    'vitkd': 'vitkd_deit_p4_from_deit_p4.py',
    'vitkd_nkd': 'vitkd-nkd_deit_p4_from_deit_p4.py',
}
# Methods that are another's config with options: KD from the teacher in bfloat16.
OPTIONS = {'kd_bf16': {'model.teacher.dtype': 'bfloat16'}}
WITHOUT_TEACHER = ('student', 'uskd', 'tf_nkd', 'deit_student')
# The ViT methods: their teacher is the ViT teacher, their baseline the ViT student alone.
VIT_METHODS = ('deit_student', 'vitkd', 'vitkd_nkd')
MAIN_JOB = ('student', 'kd')
# Training images the student sees: all of the training half, or a fixed subset of 10 per
# class, on which the student alone is far from saturated. Teachers always see all of them.
SETUPS = {
    'full': dict(train_prefix='train', epochs=30, ci_epochs=10),
    'few': dict(train_prefix='train_10', per_class=10, epochs=100, ci_epochs=100),
}
# Teacher schedules (epochs over the 898 training images); the ResNet's follows the full
# set-up's (10 with CI=true), the ViT needs more to converge on every seed.
TEACHER_EPOCHS = {'resnet': None, 'deit': 60}


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
          **overrides) -> dict:
    """Train ``config`` with MMEngine's Runner, then validate; return accuracy and timings."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': epochs,
        'default_hooks.checkpoint.interval': epochs,
        'randomness.seed': seed,
        **schedule_overrides(cfg, epochs),
        **overrides,
    })
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    metrics = runner.val_loop.run()
    return dict(top1=metrics['accuracy/top1'], seconds=seconds,
                ms_per_iter=1000 * seconds / runner.iter,
                checkpoint=osp.join(work_dir, f'epoch_{epochs}.pth'))


def provenance() -> dict:
    """Where and how the runs of this process were made."""
    def git(*args):
        result = subprocess.run(['git', *args], cwd=HERE, capture_output=True, text=True)
        return result.stdout.strip()
    cpu = platform.processor()
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                commit=git('rev-parse', 'HEAD'), dirty=bool(git('status', '--porcelain')),
                cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(),
                command=' '.join(sys.argv))


def save_records(path: str, records: list) -> list:
    """Add ``records`` to the JSON list in ``path``, replacing those of the same (model,
    seed); return the list written."""
    kept = []
    if osp.isfile(path):
        with open(path) as f:
            kept = json.load(f)['records']
    keys = {(r['model'], r['seed']) for r in records}
    merged = [r for r in kept if (r['model'], r['seed']) not in keys] + records
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(dict(records=merged), f, indent=1)
        f.write('\n')
    return merged


def baseline_of(model: str) -> str:
    """The student alone that ``model``'s runs are paired with, seed by seed."""
    return 'deit_student' if model in VIT_METHODS else 'student'


def summary_row(name: str, records: list, by_model: dict) -> str:
    top1 = np.array([r['top1'] for r in records])
    spread = f' ± {top1.std(ddof=1):.2f}' if len(records) > 1 else ''
    paired = '–'
    baseline = {r['seed']: r['top1'] for r in by_model.get(baseline_of(name), [])}
    if not name.startswith('teacher') and name != baseline_of(name):
        diffs = np.array([r['top1'] - baseline[r['seed']] for r in records
                          if r['seed'] in baseline])
        if len(diffs) > 1:
            paired = (f'{diffs.mean():+.2f} ± {diffs.std(ddof=1):.2f} '
                      f'({(diffs > 0).sum()}/{len(diffs)} up)')
    return (f'| {name:<14} | {len(records):>5} | {top1.mean():>6.2f}{spread:<7} | '
            f'{paired:<24} | {np.mean([r["seconds"] for r in records]):>8.1f} | '
            f'{np.mean([r["ms_per_iter"] for r in records]):>6.1f} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--setup', default='full', choices=list(SETUPS),
                        help='the student\'s training images: all 898 or 10 per class')
    parser.add_argument('--methods', nargs='+', default=list(MAIN_JOB), choices=list(METHODS),
                        help='how to train the student (default: the main job)')
    parser.add_argument('--seeds', type=int, default=1, help='runs per method, seeds 0..N-1')
    parser.add_argument('--first-seed', type=int, default=0,
                        help='start at this seed (to add seeds to recorded results)')
    parser.add_argument('--teacher-seeds', type=int, default=1,
                        help='train each teacher at seeds 0..N-1 (students use seed 0)')
    parser.add_argument('--retrain-teachers', action='store_true',
                        help='train the teachers again even where the work dir holds their '
                        'checkpoints (by default those are reused)')
    parser.add_argument('--epochs', type=int, help='student epochs (default: the set-up\'s)')
    parser.add_argument('--work-dir', default='work_dirs/digits')
    parser.add_argument('--record', action='store_true',
                        help='also add the results to projects/digits/results/<setup>.json')
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
    student_data = {'train_dataloader.dataset.data_prefix': setup['train_prefix']}
    run_info = provenance()
    records = {'teachers': [], args.setup: []}  # results file -> its new records

    def record(table, model, seed, run, epochs, **extra):
        records[table].append(dict(model=model, seed=seed, top1=run['top1'],
                                   seconds=run['seconds'], ms_per_iter=run['ms_per_iter'],
                                   epochs=epochs, **extra, provenance=run_info))
        save_records(osp.join(args.work_dir, f'results_{table}.json'), records[table])

    teachers = {}
    needed = sorted({'deit' if m in VIT_METHODS else 'resnet' for m in args.methods
                     if m not in WITHOUT_TEACHER})
    for name in needed:
        teacher_epochs = TEACHER_EPOCHS[name] or full_epochs
        for seed in range(args.teacher_seeds):
            print(f'\n===== the teacher ({TEACHERS[name]}, seed {seed}, '
                  f'{teacher_epochs} epochs, all training images) =====', flush=True)
            suffix = '' if seed == 0 else f'_seed{seed}'
            work_dir = osp.join(args.work_dir, TEACHER_DIRS[name] + suffix)
            checkpoint = osp.join(work_dir, f'epoch_{teacher_epochs}.pth')
            if osp.isfile(checkpoint) and not args.retrain_teachers:
                print(f'(reusing {checkpoint})')
            else:
                run = train(TEACHERS[name], work_dir, data_root, teacher_epochs, seed)
                record('teachers', f'teacher_{name}', seed, run, teacher_epochs,
                       train_images='train')
            teachers.setdefault(name, checkpoint)

    for method in args.methods:
        overrides = dict(student_data, **OPTIONS.get(method, {}))
        if method not in WITHOUT_TEACHER:
            teacher = 'deit' if method in VIT_METHODS else 'resnet'
            overrides['model.teacher.checkpoint'] = teachers[teacher]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            print(f'\n===== training the student: {method} ({METHODS[method]}, seed {seed}, '
                  f'{epochs} epochs, set-up {args.setup}) =====', flush=True)
            work_dir = osp.join(args.work_dir, f'{args.setup}_{method}_seed{seed}')
            run = train(METHODS[method], work_dir, data_root, epochs, seed, **overrides)
            record(args.setup, method, seed, run, epochs, train_images=setup['train_prefix'])

    for name, new in records.items():
        if not new:
            continue
        saved = save_records(osp.join(args.work_dir, f'results_{name}.json'), new)
        if args.record:
            saved = save_records(osp.join(HERE, 'results', f'{name}.json'), new)
        print_table(saved, name)


def print_table(records: list, table: str) -> None:
    by_model = {}
    for r in records:
        by_model.setdefault(r['model'], []).append(r)
    print(f'\nDigits, {table}: 899 validation images, CPU; students ResNet-18 width 4 and ViT '
          'width 32, teachers ResNet-18 width 16 and ViT width 64 (all 898 training images)')
    print(f'| {"model":<14} | {"seeds":>5} | {"top-1 (%)":<13} | {"paired Δ vs alone":<24} | '
          f'{"train (s)":>8} | {"ms/it":>6} |')
    print(f'| {"-" * 14} | {"-" * 5} | {"-" * 13} | {"-" * 24} | {"-" * 8} | {"-" * 6} |')
    for name, runs in by_model.items():
        print(summary_row(name, runs, by_model))


if __name__ == '__main__':
    main()
