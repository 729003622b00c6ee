"""Building a config's distiller as the Runner would, with or without its teachers' weights."""
from typing import Optional, Tuple

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

from mmdistill.distillers import Distiller
from mmdistill.utils import load_config, model_cfg_of


def build_distiller(config: str, cfg_options: Optional[dict] = None,
                    teacher_checkpoint: Optional[str] = None) -> Tuple[Distiller, object]:
    """Build the distiller of a config as the Runner would, with the teacher checkpoint
    replaced by ``teacher_checkpoint`` (``None``: random teacher weights, no download; the
    weights do not change the timings). Several teachers (``teachers=``) get random weights.

    Returns:
        The distiller and the loaded config.
    """
    cfg = load_config(config, cfg_options)
    model_cfg = model_cfg_of(cfg)
    if isinstance(model_cfg.get('teacher'), dict):
        model_cfg.teacher.checkpoint = teacher_checkpoint
    teachers = model_cfg.get('teachers') or {}
    if teachers and teacher_checkpoint is not None:
        raise ValueError(f'{config} has several teachers ({", ".join(teachers)}): one '
                         'teacher_checkpoint cannot replace their checkpoints; benchmark them '
                         'with random weights (teacher_checkpoint=None)')
    for teacher in teachers.values():
        teacher.checkpoint = None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MMENGINE_MODELS.build(model_cfg)
    if not isinstance(model, Distiller):
        raise ValueError(f"{config} builds a {type(model).__name__}, not an mmdistill "
                         "Distiller: benchmark a distillation config (model.type="
                         "'mmdistill.Distiller')")
    return model, cfg
