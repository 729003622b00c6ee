"""Building a distillation config without downloads: no teacher checkpoint, no pretrained
weights in the student or the teacher."""
from mmengine.config import Config

from mmdistill.utils import load_config, parse_cfg_options


def _is_pretrained(init_cfg) -> bool:
    items = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    return any(isinstance(item, dict) and item.get('type') == 'Pretrained' for item in items)


def pretrained_keys(cfg, prefix: str = '') -> list:
    """Dotted keys (list items by index) of the pretrained-weight loads in a config dict:
    ``init_cfg`` of type ``Pretrained`` and mmseg's ``pretrained=<path or URL>``."""
    if isinstance(cfg, dict):
        items = cfg.items()
    elif isinstance(cfg, list):
        items = enumerate(cfg)
    else:
        return []
    keys = []
    for key, value in items:
        if (key == 'init_cfg' and _is_pretrained(value)) or \
                (key == 'pretrained' and isinstance(value, str)):
            keys.append(f'{prefix}{key}')
        else:
            keys += pretrained_keys(value, f'{prefix}{key}.')
    return keys


def offline_options(cfg: Config) -> dict:
    """Overrides (for ``cfg.merge_from_dict``) that build a distillation config's models
    without downloading anything: each teacher (``teacher`` or ``teachers.<name>``) gets random
    weights (``checkpoint=None``) and no model loads pretrained weights (a teacher's overrides
    go into its ``cfg_options``)."""
    options = {f'model.student.{key}': None for key in pretrained_keys(cfg.model.student)}
    teachers = {'model.teacher': cfg.model.get('teacher')}
    teachers.update({f'model.teachers.{name}': teacher
                     for name, teacher in (cfg.model.get('teachers') or {}).items()})
    for key, teacher in teachers.items():
        if teacher is None:
            continue
        teacher_options = dict(parse_cfg_options(teacher.get('cfg_options')) or {})
        model = load_config(teacher.config, teacher_options).model
        teacher_options.update({f'model.{key}': None for key in pretrained_keys(model)})
        options.update({f'{key}.checkpoint': None, f'{key}.cfg_options': teacher_options})
    return options
