"""Small helpers shared by the distiller, the tools and the tests."""
import ast
import copy
import difflib
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope
from mmengine.utils import get_installed_path, is_installed


def resolve_config_path(path: str) -> str:
    """Turn ``'mmdet::retinanet/x.py'`` into a file path; plain paths are checked as they are.

    A relative plain path is read from the working directory, as ``data_root`` and
    ``load_from`` are (only ``_base_`` is read relative to the config file). A config names a
    file next to itself with MMEngine's ``'{{ fileDirname }}/x.py'``, which works with every
    train script since MMEngine substitutes it when it reads the config file.
    """
    if '::' not in path:
        if osp.isfile(path):
            return path
        if osp.isabs(path):
            raise FileNotFoundError(f'config file {path} does not exist')
        raise FileNotFoundError(
            f"config file '{path}' not found in the working directory {os.getcwd()}: a "
            'relative path here is read from the working directory, like data_root and '
            "load_from. To name a file beside the distillation config, as _base_ does, "
            f"write '{{{{ fileDirname }}}}/{path}' (MMEngine puts the config file's folder "
            'there when it reads the file), or give an absolute path.')
    package, _, relative = path.partition('::')
    if not is_installed(package):
        raise ModuleNotFoundError(
            f"config '{path}' comes from the package '{package}', which is not installed here")
    configs_root = osp.join(get_installed_path(package), '.mim', 'configs')
    full_path = osp.join(configs_root, relative)
    if not osp.isfile(full_path):
        folder = osp.join(configs_root, osp.dirname(relative))
        names = sorted(os.listdir(folder)) if osp.isdir(folder) else []
        close = difflib.get_close_matches(osp.basename(relative), names, n=3, cutoff=0.4)
        hint = f' Closest: {", ".join(close)}.' if close else ''
        raise FileNotFoundError(f"config '{path}' not found (looked for {full_path}).{hint}")
    return full_path


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config from a file or a package-scoped path, applying ``cfg_options``."""
    cfg = Config.fromfile(resolve_config_path(path))
    cfg_options = parse_cfg_options(cfg_options)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def parse_cfg_options(options, name: str = 'teacher.cfg_options') -> Optional[dict]:
    """``options`` as a dict of config overrides; a string holding a dict literal is parsed.

    ``--cfg-options model.teacher.cfg_options="{'model.x': 1}"`` reaches the config as a
    string (MMEngine's ``DictAction`` parses lists and tuples, not dicts).
    """
    if options is None or isinstance(options, dict):
        return options
    parsed = None
    if isinstance(options, str):
        try:
            parsed = ast.literal_eval(options)
        except (ValueError, SyntaxError):
            pass
    if isinstance(parsed, dict):
        return parsed
    raise ValueError(
        f'{name} must be a dict of config overrides, got the {type(options).__name__} '
        f'{options!r}. On the command line give each override its own key below '
        f'{name}: --cfg-options model.{name}.model.head.num_classes=10 '
        f'model.{name}.model.backbone.frozen_stages=-1; in a config, '
        f"{name.split('.')[-1]}={{'model.head.num_classes': 10}}.")


def model_cfg_of(cfg: Config) -> dict:
    """A config's model dict, with the top-level ``data_preprocessor`` folded in.

    mmpretrain configs keep ``data_preprocessor`` beside ``model``; the Runner merges it into
    the model dict, and so does this.
    """
    model = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    return model


def current_scope() -> Optional[str]:
    """The scope name of the current ``DefaultScope``, if any."""
    instance = DefaultScope.get_current_instance()
    return instance.scope_name if instance is not None else None


def build_model_in_scope(cfg: dict, scope: Optional[str]):
    """Build a model dict with MMEngine's root registry inside ``scope`` (``mmdet``, ...)."""
    cfg = copy.deepcopy(cfg)
    scope = cfg.pop('_scope_', None) or scope
    if scope is None:
        raise ValueError(
            f"cannot tell which codebase builds the model '{cfg.get('type')}': set "
            "default_scope in the config (OpenMMLab base configs do) or '_scope_' in its dict")
    cfg['_scope_'] = scope
    return MMENGINE_MODELS.build(cfg)
