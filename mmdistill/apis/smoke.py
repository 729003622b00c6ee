"""Smoke-testing a config: a few training iterations on generated data, then validation and
export, through the config's runner (``mmdistill.SafeRunner`` where it names none: the runner
``tools/train.py`` builds), with everything else the config says left as it is.

The config's datasets are replaced, leaf by leaf (wrappers such as ``RepeatDataset``,
``MultiImageMixDataset`` or mmpose's ``CombinedDataset`` are kept, and so is every pipeline),
by data that the student codebase's ``smoke_data`` (:mod:`mmdistill.codebases`) writes with
:mod:`mmdistill.testing` in the codebase's generic format (a ``CustomDataset`` of coloured
shapes for mmpretrain, a ``CocoDataset`` of stick figures for mmpose...).

The models keep their own class counts (the generated labels are the first few classes).
The schedule is cut to ``iters`` iterations (one epoch of ``iters`` batches, or ``iters``
iterations of an iteration-based loop) followed by one validation, and every parameter
scheduler is clipped to that run, each of its own type (:mod:`.short_schedule`); hooks,
optimizer and input sizes stay the config's.
"""
import copy
import math
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from mmdistill.codebases import SmokeData, get_codebase
from mmdistill.engine import build_runner, train_with_safe_loading
from .export import export_student
from .offline import offline_options, pretrained_keys
from .short_schedule import clip_param_schedulers

# What a leaf dataset keeps of the config's own: how it transforms and reads its samples.
KEPT_DATASET_KEYS = ('pipeline', 'data_mode', 'test_mode')
LEAF_DATA_KEYS = ('data_root', 'ann_file', 'data_prefix')
TIMING_KEYS = ('val/time', 'val/data_time')  # logged beside the metrics, not metrics


@dataclass
class SmokeResult:
    """What a smoke test saw: the last logged training losses, the validation metrics, the
    run's last checkpoint, the exported student, and whether the teacher stayed as built."""
    losses: Dict[str, float]
    metrics: Dict[str, float]
    checkpoint: str
    exported: Tuple[str, str] = ()
    teacher_unchanged: Optional[bool] = None
    runner: Runner = field(default=None, repr=False)


def _replace_leaves(dataset, generated: SmokeData, split: str):
    """A copy of the dataset dict with every leaf dataset (one that reads files) reading the
    generated data of ``split`` instead, its pipeline kept; wrappers are kept as they are."""
    if isinstance(dataset, list):
        return [_replace_leaves(item, generated, split) for item in dataset]
    if not isinstance(dataset, dict):
        return dataset
    if 'pipeline' in dataset and any(key in dataset for key in LEAF_DATA_KEYS):
        return dict(generated.leaf(split, dataset),
                    **{k: copy.deepcopy(dataset[k]) for k in KEPT_DATASET_KEYS if k in dataset})
    return {key: _replace_leaves(value, generated, split) for key, value in dataset.items()}


def _evaluators_reading(evaluator, ann_file: Optional[str]):
    """The evaluator config(s) with ``ann_file`` pointing at the generated annotations."""
    if isinstance(evaluator, list):
        return [_evaluators_reading(item, ann_file) for item in evaluator]
    if isinstance(evaluator, dict) and 'ann_file' in evaluator and ann_file is not None:
        return dict(evaluator, ann_file=ann_file)
    return evaluator


def shrink_to_generated_data(cfg: Config, generated: SmokeData, iters: int,
                             batch_size: int) -> None:
    """Make ``cfg`` train ``iters`` iterations on the generated data and validate once:
    its dataloaders and evaluators are replaced (not merged into: a leaf keeps none of its
    own file settings, such as mmpose's detected-box file), its loop, checkpoint and logging
    intervals set, its parameter schedulers clipped to the run."""

    def loader(name: str, split: str) -> dict:
        return dict(cfg[name], batch_size=batch_size, num_workers=0, persistent_workers=False,
                    dataset=_replace_leaves(cfg[name]['dataset'], generated, split))

    cfg.train_dataloader = loader('train_dataloader', 'train')
    for split in ('val', 'test'):
        if cfg.get(f'{split}_dataloader') is not None:
            cfg[f'{split}_dataloader'] = loader(f'{split}_dataloader', 'val')
            cfg[f'{split}_evaluator'] = _evaluators_reading(cfg[f'{split}_evaluator'],
                                                            generated.ann_file)
    by_iteration = 'max_iters' in cfg.train_cfg
    options = {'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters} \
        if by_iteration else {'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1}
    if 'val_begin' in cfg.train_cfg:
        options['train_cfg.val_begin'] = 1
    options.update({'default_hooks.logger.interval': 1,
                    'default_hooks.checkpoint.interval': iters if by_iteration else 1})
    cfg.merge_from_dict(options)
    cfg.param_scheduler = clip_param_schedulers(cfg.get('param_scheduler'), iters)


def model_num_classes(model: dict) -> Optional[int]:
    """The most classes a model dict (a distiller's student) declares in any ``num_classes``
    (a detector's heads say 80, its RPN nothing); ``None`` when none does."""
    model = model.get('student', model)
    found = []

    def collect(value):
        if isinstance(value, dict):
            found.extend(v for k, v in value.items() if k == 'num_classes' and isinstance(v, int))
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    collect(model)
    return max(found, default=None)


def go_offline(cfg: Config, is_distiller: bool) -> None:
    """Make ``cfg`` read no weights: random teachers, no pretrained models, no ``load_from``
    (a checkpoint to start from, a URL or a file of an earlier run)."""
    if is_distiller:
        cfg.merge_from_dict(offline_options(cfg))
    else:
        cfg.merge_from_dict({f'model.{key}': None for key in pretrained_keys(cfg.model)})
    cfg.load_from = None


def _teacher_state(runner: Runner) -> Optional[dict]:
    teacher = getattr(runner.model, 'teacher', None)
    if teacher is None:
        return None
    return {k: v.detach().clone() for k, v in teacher.state_dict().items()}


def smoke_test(config: str, work_dir: str, iters: int = 2, batch_size: int = 2,
               image_size: Tuple[int, int] = (128, 128), offline: bool = False,
               cfg_options: Optional[dict] = None, export: bool = True) -> SmokeResult:
    """Train ``config`` for ``iters`` iterations on generated data in ``work_dir``, validate
    once, and (for a distillation config) export the student.

    Args:
        config: the config file.
        work_dir: where the data, logs, checkpoints and the export go.
        iters: training iterations.
        batch_size: training and validation batch size.
        image_size: (H, W) of the generated images (pipelines resize them as they would
            real images).
        offline: no downloads: the teachers get random weights, no model loads pretrained
            weights and the run starts from none (no ``load_from``).
        cfg_options: further overrides, applied first (as ``--cfg-options``).
        export: export the student of a distillation config when done.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    codebase = get_codebase(cfg.get('default_scope'), "smoke-test on the config's own data")
    generated = codebase.smoke_data(osp.join(work_dir, 'data'), iters * batch_size, batch_size,
                                    image_size, model_num_classes(cfg.model))
    is_distiller = 'student' in cfg.model
    if offline:
        go_offline(cfg, is_distiller)
    shrink_to_generated_data(cfg, generated, iters, batch_size)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'

    runner = build_runner(cfg, 'the smoke test')
    before = _teacher_state(runner)
    train_with_safe_loading(runner)
    losses = {key[len('train/'):]: buffer.current()
              for key, buffer in runner.message_hub.log_scalars.items()
              if key.startswith('train/') and 'loss' in key}
    metrics = {key[len('val/'):]: buffer.current()
               for key, buffer in runner.message_hub.log_scalars.items()
               if key.startswith('val/') and key not in TIMING_KEYS}
    after = _teacher_state(runner)
    checkpoint = find_latest_checkpoint(work_dir)
    result = SmokeResult(losses=losses, metrics=metrics, checkpoint=checkpoint, runner=runner)
    if before is not None:
        result.teacher_unchanged = all(torch.equal(before[k], after[k]) for k in before)
    if is_distiller and export:
        run_config = osp.join(work_dir, osp.basename(config))
        result.exported = export_student(run_config, checkpoint, osp.join(work_dir, 'export'))
    return result


def problems(result: SmokeResult) -> list:
    """What is wrong in a smoke test's result: non-finite losses, a teacher that changed."""
    found = [f'{key} is {value}' for key, value in result.losses.items()
             if not math.isfinite(value)]
    if result.teacher_unchanged is False:
        found.append('the teacher changed during training')
    return found
