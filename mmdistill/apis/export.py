"""Turning a distiller checkpoint into the student codebase's own checkpoint and config."""
import copy
import os
import os.path as osp
from typing import Tuple

import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

STUDENT_PREFIX = 'student.'
KEPT_META = ('dataset_meta', 'epoch', 'iter', 'seed', 'experiment_name', 'mmengine_version')


def student_config(cfg: Config) -> Config:
    """The distillation config with ``model`` replaced by the student and mmdistill's parts
    (its custom import and hooks) removed: a config the student codebase runs on its own."""
    if cfg.model.get('type') not in ('mmdistill.Distiller', 'Distiller'):
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


def export_student(config: str, checkpoint: str, out_dir: str) -> Tuple[str, str]:
    """Write ``student.pth`` and ``student_config.py`` into ``out_dir``.

    The checkpoint holds the student's weights (and the run's ``dataset_meta``), loadable with
    the student codebase's own API (``init_detector``, ``init_model``, ``load_checkpoint``).

    Returns:
        The paths of the checkpoint and the config.
    """
    cfg = Config.fromfile(config)
    loaded = _load_checkpoint(checkpoint, map_location='cpu')
    meta = {k: v for k, v in loaded.get('meta', {}).items() if k in KEPT_META}
    meta['distilled_from'] = osp.abspath(checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = osp.join(out_dir, 'student.pth')
    cfg_path = osp.join(out_dir, 'student_config.py')
    torch.save({'state_dict': student_state_dict(loaded, checkpoint), 'meta': meta}, ckpt_path)
    student_config(cfg).dump(cfg_path)
    return ckpt_path, cfg_path
