"""Building a config's distiller as the Runner would, with or without its teachers' weights."""
from typing import Optional, Tuple

from mmengine.config import Config

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

from mmdistill.distillers import Distiller
from mmdistill.utils import load_config, model_cfg_of

from .offline import pretrained_keys


def build_distiller(config: str, cfg_options: Optional[dict] = None,
                    teacher_checkpoint: Optional[str] = None) -> Tuple[Distiller, object]:
    """Build the distiller of a config as the Runner would, with the teacher checkpoint
    replaced by ``teacher_checkpoint`` (``None``: random teacher weights, no download; the
    weights do not change the timings). Several teachers (``teachers=``) get random weights.
    The student and the losses are initialised as the Runner initialises them
    (``init_weights()``: a detector's classification bias gets its prior, for instance),
    without the pretrained weights the student's config would download.

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
    if isinstance(model_cfg.get('student'), dict):
        without_downloads = Config(dict(student=model_cfg.student))
        without_downloads.merge_from_dict(
            {f'student.{key}': None for key in pretrained_keys(model_cfg.student)})
        model_cfg.student = without_downloads.student
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MMENGINE_MODELS.build(model_cfg)
        if isinstance(model, Distiller):
            model.init_weights()
    if not isinstance(model, Distiller):
        raise ValueError(f"{config} builds a {type(model).__name__}, not an mmdistill "
                         "Distiller: benchmark a distillation config (model.type="
                         "'mmdistill.Distiller')")
    return model, cfg
