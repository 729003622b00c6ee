"""Small helpers shared by the distiller, the tools and the tests."""
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
    """Turn ``'mmdet::retinanet/x.py'`` into a file path; plain paths are checked as they are."""
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path} does not exist')
        return path
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
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


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
