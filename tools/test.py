"""Test a checkpoint through MMEngine's Runner with the config's own test data and metric.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options key=value ...]
    mim test mmdistill CONFIG --checkpoint CHECKPOINT

For a distillation config the student is what is tested: the checkpoint is exported first
(``tools/export_student.py``: the student's own config and weights, in ``<work-dir>/student``),
and the exported pair is tested, so neither the teacher nor its checkpoint is needed and the
numbers are those of the model that ships. ``--cfg-options`` apply to the config tested (the
student's, for a distillation config). Any other OpenMMLab config is tested as it is. One
process (several: the student codebase's own ``tools/dist_test.sh`` on the exported pair).
"""
import argparse
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmdistill  # noqa: F401  (registers mmdistill's modules)
from mmdistill.apis import export_student, is_distiller_config
from mmdistill.engine import safe_checkpoint_loading


def parse_args():
    parser = argparse.ArgumentParser(description='Test a checkpoint (the student alone for a '
                                     'distillation config)')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs, metrics and the exported student go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override entries of the config tested, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    config, checkpoint = args.config, args.checkpoint
    work_dir = args.work_dir or osp.join('./work_dirs',
                                         osp.splitext(osp.basename(config))[0])
    if is_distiller_config(Config.fromfile(config)):
        checkpoint, config = export_student(config, checkpoint, osp.join(work_dir, 'student'))
        print(f'testing the student: {config} with {checkpoint}')
    cfg = Config.fromfile(config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    with safe_checkpoint_loading('load_from'):
        Runner.from_cfg(cfg).test()


if __name__ == '__main__':
    main()
