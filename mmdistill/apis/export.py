"""Turning a distiller checkpoint into the student codebase's own checkpoint and config."""
import copy
import logging
import os
import os.path as osp
from typing import Any, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

from mmdistill.engine.checkpoint import safe_checkpoint_loading

STUDENT_PREFIX = 'student.'
KEPT_META = ('dataset_meta', 'epoch', 'iter', 'seed', 'experiment_name', 'mmengine_version')
_DROPPED = object()  # what plain_meta returns for a value it leaves out


DISTILLER_TYPES = ('mmdistill.Distiller', 'Distiller')


def is_distiller_config(cfg: Config) -> bool:
    """Whether ``cfg`` trains an mmdistill ``Distiller`` (rather than a model on its own)."""
    return cfg.model.get('type') in DISTILLER_TYPES


def student_config(cfg: Config) -> Config:
    """The distillation config with ``model`` replaced by the student and mmdistill's parts
    (its custom import, its hooks and its runner, ``runner_type='mmdistill.SafeRunner'``)
    removed: a config the student codebase runs on its own."""
    if not is_distiller_config(cfg):
        raise ValueError(f"config model type is {cfg.model.get('type')}, not a distiller")
    student = copy.deepcopy(cfg.model.student)
    if cfg.model.get('data_preprocessor') is not None:
        student.setdefault('data_preprocessor', copy.deepcopy(cfg.model.data_preprocessor))
    out = copy.deepcopy(cfg)
    out.model = student
    custom_imports = out.get('custom_imports')
    if custom_imports:
        kept = [m for m in custom_imports['imports'] if m.split('.')[0] != 'mmdistill']
        if kept:
            out.custom_imports = dict(custom_imports, imports=kept)
        else:
            out.pop('custom_imports')
    if out.get('custom_hooks'):
        out.custom_hooks = [h for h in out.custom_hooks
                            if not str(h.get('type', '')).startswith('mmdistill.')]
    if str(out.get('runner_type', '')).startswith('mmdistill.'):
        out.pop('runner_type')  # the codebase's own scripts build MMEngine's Runner
    return out


def student_state_dict(checkpoint: dict, source: str = 'checkpoint') -> dict:
    """The ``student.*`` weights of a distiller checkpoint, without the prefix."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    student = {k[len(STUDENT_PREFIX):]: v for k, v in state_dict.items()
               if k.startswith(STUDENT_PREFIX)}
    if not student:
        raise ValueError(f"{source} has no '{STUDENT_PREFIX}*' weights: it is not a "
                         'checkpoint of an mmdistill Distiller')
    return student


def plain_meta(value: Any, key: str = 'meta') -> Any:
    """``value`` made of what ``torch.load(weights_only=True)`` accepts: numpy arrays become
    (nested) lists and numpy scalars Python numbers; dicts, lists, tuples, strings, numbers,
    ``None`` and tensors stay as they are. Other objects are dropped with a warning naming
    their ``key``.

    torch >= 2.6 loads weights-only by default, so a checkpoint whose metadata holds numpy
    arrays (mmpose's dataset metainfo: keypoint colours, sigmas) fails to load in a process
    that has not imported mmdistill (whose loader allows full loads).
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool, torch.Tensor)):
        return value
    if isinstance(value, dict):
        plain = {}
        for k, v in value.items():
            item = plain_meta(v, f'{key}.{k}')
            if item is not _DROPPED:
                plain[k] = item
        return plain
    if isinstance(value, (list, tuple)):
        items = [plain_meta(v, f'{key}[{i}]') for i, v in enumerate(value)]
        kept = [item for item in items if item is not _DROPPED]
        return tuple(kept) if isinstance(value, tuple) else kept
    print_log(f'export: {key} is a {type(value).__name__}, which a weights-only load '
              'refuses; it is left out of the exported checkpoint', logger='current',
              level=logging.WARNING)
    return _DROPPED


def export_student(config: str, checkpoint: str, out_dir: str) -> Tuple[str, str]:
    """Write ``student.pth`` and ``student_config.py`` into ``out_dir``.

    The checkpoint holds the student's weights (and the run's ``dataset_meta``), loadable with
    the student codebase's own API (``init_detector``, ``init_model``, ``load_checkpoint``)
    in a process that never imported mmdistill: it holds only what ``torch.load`` accepts
    with ``weights_only=True`` (see :func:`plain_meta`).

    Returns:
        The paths of the checkpoint and the config.
    """
    cfg = Config.fromfile(config)
    with safe_checkpoint_loading('checkpoint to export'):
        loaded = _load_checkpoint(checkpoint, map_location='cpu')
    meta = plain_meta({k: v for k, v in loaded.get('meta', {}).items() if k in KEPT_META})
    meta['distilled_from'] = osp.abspath(checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = osp.join(out_dir, 'student.pth')
    cfg_path = osp.join(out_dir, 'student_config.py')
    torch.save({'state_dict': student_state_dict(loaded, checkpoint), 'meta': meta}, ckpt_path)
    student_config(cfg).dump(cfg_path)
    return ckpt_path, cfg_path
