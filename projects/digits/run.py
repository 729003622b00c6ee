"""The built-in example: distillation on scikit-learn's handwritten digits, end to end.

    python projects/digits/run.py [--methods student kd ...] [--seeds N] [--epochs N]

1. writes the 1797 digits as 32×32 PNG files in mmpretrain's CustomDataset layout
   (a stratified half for training, the other half for validation);
2. trains the teacher (ResNet-18, width 16) once, then the student (ResNet-18, width 4) alone
   and with each distillation method asked for, once per seed, each with MMEngine's Runner and
   the configs in ``configs/``;
3. prints top-1 accuracy (mean ± std over the seeds), train time and time per iteration.

By default it runs the main job: teacher, student alone and student + classic KD, one seed.
With CI=true the schedule is shorter (10 epochs instead of 30), never skipped.
"""
import argparse
import os
import os.path as osp
import time

import cv2
import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner

import mmdistill  # noqa: F401

HERE = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(HERE, 'configs')
TEACHER = 'teacher_resnet18.py'
# What the student is trained with -> its config. Every config but 'student' distils.
METHODS = {
    'student': 'student_resnet18_w4.py',
    'kd': 'kd_resnet18_w4_from_resnet18.py',
    'nkd': 'nkd_resnet18_w4_from_resnet18.py',
    'uskd': 'uskd_resnet18_w4.py',
    'mgd': 'mgd_resnet18_w4_from_resnet18.py',
    'kd_bf16': 'kd_resnet18_w4_from_resnet18.py',
}
# Methods that are another's config with options: KD from the teacher in bfloat16.
OPTIONS = {'kd_bf16': {'model.teacher.dtype': 'bfloat16'}}
WITHOUT_TEACHER = ('student', 'uskd')
MAIN_JOB = ('student', 'kd')


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
        'param_scheduler.T_max': epochs,
        'default_hooks.checkpoint.interval': epochs,
        'randomness.seed': seed,
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


def summary_row(name: str, runs: list) -> str:
    top1 = np.array([r['top1'] for r in runs])
    spread = f' ± {top1.std(ddof=1):.2f}' if len(runs) > 1 else ''
    return (f'| {name:<10} | {len(runs):>5} | {top1.mean():>6.2f}{spread:<7} | '
            f'{np.mean([r["seconds"] for r in runs]):>14.1f} | '
            f'{np.mean([r["ms_per_iter"] for r in runs]):>13.1f} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--methods', nargs='+', default=list(MAIN_JOB), choices=list(METHODS),
                        help='how to train the student (default: the main job)')
    parser.add_argument('--seeds', type=int, default=1, help='runs per method, seeds 0..N-1')
    parser.add_argument('--epochs', type=int,
                        default=10 if os.environ.get('CI') == 'true' else 30)
    parser.add_argument('--work-dir', default='work_dirs/digits')
    args = parser.parse_args()

    data_root = osp.join(args.work_dir, 'data')
    if not osp.isdir(osp.join(data_root, 'val')):
        write_digits(data_root)
    print(f'\n===== training the teacher ({TEACHER}, {args.epochs} epochs) =====', flush=True)
    teacher = train(TEACHER, osp.join(args.work_dir, 'teacher'), data_root, args.epochs, seed=0)
    results = {'teacher': [teacher]}
    for method in args.methods:
        overrides = {} if method in WITHOUT_TEACHER else {
            'model.teacher.checkpoint': teacher['checkpoint']}
        overrides.update(OPTIONS.get(method, {}))
        results[method] = []
        for seed in range(args.seeds):
            print(f'\n===== training the student: {method} ({METHODS[method]}, seed {seed}, '
                  f'{args.epochs} epochs) =====', flush=True)
            work_dir = osp.join(args.work_dir, f'{method}_seed{seed}')
            results[method].append(
                train(METHODS[method], work_dir, data_root, args.epochs, seed, **overrides))

    print(f'\nDigits: 898 train / 899 val images, {args.epochs} epochs, CPU; student '
          'ResNet-18 width 4, teacher ResNet-18 width 16')
    print(f'| {"model":<10} | {"seeds":>5} | {"top-1 (%)":<13} | {"train time (s)":>14} | '
          f'{"ms/iteration":>13} |')
    print(f'| {"-" * 10} | {"-" * 5} | {"-" * 13} | {"-" * 14} | {"-" * 13} |')
    for name, runs in results.items():
        print(summary_row(name, runs))


if __name__ == '__main__':
    main()
