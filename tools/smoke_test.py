"""Smoke-test a config on generated data: a few training iterations, one validation, export.

    python tools/smoke_test.py CONFIG [--iters 2] [--batch-size 2] [--image-size H W]
                               [--offline] [--work-dir DIR] [--cfg-options key=value ...]

Everything the config says (models, pipelines, optimizer, schedulers, hooks, evaluator) runs
as written; only the data is replaced by generated data in the student codebase's format
(shapes for mmpretrain/mmdet/mmseg, stick figures with the 17 COCO keypoints for mmpose) and
the schedule is cut to ``--iters`` iterations (every parameter scheduler clipped to them).
``--offline`` gives the teachers random weights and skips pretrained weights and
``load_from``, for a machine without network or before the teacher is trained. It prints the
losses of the last iteration, the validation metrics, whether the teacher stayed frozen, and
the exported student; it exits with 1 when a loss is not finite or the teacher changed.
"""
import argparse
import os.path as osp
import sys
import tempfile

from mmengine.config import DictAction

import mmdistill  # noqa: F401  (registers mmdistill's modules)
from mmdistill.apis.smoke import problems, smoke_test


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file (a distillation config or any other)')
    parser.add_argument('--iters', type=int, default=2, help='training iterations')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--image-size', type=int, nargs=2, default=(128, 128),
                        metavar=('H', 'W'), help='size of the generated images')
    parser.add_argument('--offline', action='store_true',
                        help='random teacher weights, no pretrained weights, no load_from')
    parser.add_argument('--work-dir', help='where data, logs, checkpoints and the export go '
                        '(default: a new temporary folder)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    work_dir = args.work_dir or tempfile.mkdtemp(
        prefix=f'smoke_{osp.splitext(osp.basename(args.config))[0]}_')
    result = smoke_test(args.config, work_dir, iters=args.iters, batch_size=args.batch_size,
                        image_size=tuple(args.image_size), offline=args.offline,
                        cfg_options=args.cfg_options)
    # A wrapper of several leaf datasets (mmpose's CombinedDataset) trains an epoch over all.
    print(f'\nsmoke test of {args.config} ({result.runner.iter} iterations, work dir '
          f'{work_dir})')
    for key, value in sorted(result.losses.items()):
        print(f'  {key}: {value:.6g}')
    for key, value in sorted(result.metrics.items()):
        print(f'  val {key}: {value:.4g}')
    if not result.metrics:
        print('  val: no metric reported (an untrained detector may keep no box above its '
              'score threshold)')
    if result.teacher_unchanged is not None:
        print(f'  teacher unchanged by training: {result.teacher_unchanged}')
    print(f'  checkpoint: {result.checkpoint}')
    if result.exported:
        print(f'  exported student: {result.exported[0]}, {result.exported[1]}')
    found = problems(result)
    for problem in found:
        print(f'PROBLEM: {problem}')
    print('FAILED' if found else 'OK')
    sys.exit(1 if found else 0)


if __name__ == '__main__':
    main()
