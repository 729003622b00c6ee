"""Train with a distillation config (or any OpenMMLab config) through MMEngine's Runner.

    python tools/train.py configs/kd/xxx.py [--work-dir DIR] [--resume [CKPT]] [--amp]
    mim train mmdistill configs/kd/xxx.py
    bash tools/dist_train.sh configs/kd/xxx.py 8 [args]          # 8 GPUs (or processes)
    torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch   # also on CPU (gloo)

The runner is the config's ``runner_type`` (mmdistill's configs name ``mmdistill.SafeRunner``),
or ``mmdistill.SafeRunner`` when the config names none: crash-safe checkpoints, exact resume.
``--resume`` alone resumes from the newest complete checkpoint of the work dir; when there is
none it starts from the config's ``load_from`` (said in the log), or stops with an error.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS

import mmdistill  # noqa: F401  (registers mmdistill's modules)
from mmdistill.engine import (SafeRunner, runner_class, setup_distributed,
                              train_with_safe_loading)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model (distillation or not)')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or (alone) from the newest complete '
                        "checkpoint of the work dir, starting from the config's load_from when "
                        'there is none yet')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    try:
        safe = issubclass(runner_class(cfg, 'tools/train.py'), SafeRunner)
    except KeyError as error:
        raise KeyError(f'{args.config}: {error.args[0]}') from None
    if args.resume == 'auto' and safe:
        cfg.resume = 'auto'  # load_from stays: the start point while there is nothing to resume
    elif args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None  # MMEngine's meaning for other runners
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    setup_distributed(cfg)  # gloo and a CPU-capable DDP wrapper where CUDA is absent
    train_with_safe_loading(RUNNERS.build(cfg))


if __name__ == '__main__':
    main()
