"""Writing a pruned model as a checkpoint and a config that mmpretrain's API loads.

    from projects.upop.upop import export_pruned
    export_pruned('configs/upop_x.py', 'work_dirs/upop_x/epoch_300.pth', 'exported/')
    model = mmpretrain.get_model('exported/pruned_config.py', pretrained='exported/pruned.pth')

The exported config imports ``mmdistill.pruning`` (installed with mmdistill) instead of this
project, so it loads wherever mmdistill is installed.
"""
import copy
import os
import os.path as osp
from typing import Dict, List, Tuple

import torch
from mmengine.config import Config
from torch import nn
from mmengine.runner.checkpoint import _load_checkpoint

from mmdistill.apis.export import (KEPT_META, is_distiller_config, student_config,
                                   student_state_dict)
from mmdistill.engine.checkpoint import safe_checkpoint_loading
from mmdistill.utils import build_model_in_scope, model_cfg_of
from mmdistill.pruning.structures import AttentionHeadDims, find_structures

# What the exported config imports instead of this project: the installed module that
# registers UPopPrunedBackbone (the pruning hooks, this project's part, are dropped).
LOADER_MODULE = 'mmdistill.pruning'
PRUNING_HOOKS = ('UPopHook', 'UniformMagnitudePruningHook')


def build_dense(model_cfg: dict, scope: str) -> nn.Module:
    """The dense model of ``model_cfg``, on the meta device (shapes only)."""
    with torch.device('meta'):
        return build_model_in_scope(copy.deepcopy(model_cfg), scope)


def read_widths(dense: nn.Module, state_dict: Dict[str, torch.Tensor],
                prefix: str = '') -> Dict[str, int]:
    """The width in ``state_dict`` of each prunable structure of ``dense`` (found under
    ``prefix``), by its path: head dims of an attention, hidden units of an MLP."""
    widths = {}
    for structure in find_structures(dense, prefix):
        width = structure.width_in(state_dict)
        if width is None:
            raise KeyError(f'{structure.path} of the model is not in the checkpoint')
        widths[structure.path] = width
    return widths


def backbone_widths(dense: nn.Module, state_dict: Dict[str, torch.Tensor]
                    ) -> Tuple[List[int], List[int], bool]:
    """The head dims of each attention layer and the hidden units of each MLP of the backbone
    of ``dense`` in ``state_dict``, and whether any attention layer is narrower than in the
    dense model."""
    head_dims, hidden, narrowed = [], [], False
    widths = read_widths(dense.backbone, state_dict, 'backbone')
    for structure in find_structures(dense.backbone, 'backbone'):
        width = widths[structure.path]
        if isinstance(structure, AttentionHeadDims):
            head_dims.append(width)
            narrowed |= width < structure.num_units
        else:
            hidden.append(width)
    return head_dims, hidden, narrowed


def pruned_model_config(model_cfg: dict, head_dims: List[int], hidden: List[int],
                        attention_narrowed: bool = True) -> dict:
    """``model_cfg`` with its backbone at the given widths: MLP widths in mmpretrain's own
    ``layer_cfgs``; attention widths, which mmpretrain's config cannot express, through
    ``mmdistill.UPopPrunedBackbone`` (only if an attention layer was narrowed)."""
    model_cfg = copy.deepcopy(model_cfg)
    backbone = model_cfg['backbone']
    layer_cfgs = backbone.get('layer_cfgs', {})
    if isinstance(layer_cfgs, dict):
        layer_cfgs = [copy.deepcopy(layer_cfgs) for _ in hidden]
    if len(layer_cfgs) != len(hidden):
        raise ValueError(f'the backbone has {len(layer_cfgs)} layer_cfgs and {len(hidden)} MLPs')
    backbone['layer_cfgs'] = [dict(cfg, feedforward_channels=width)
                              for cfg, width in zip(layer_cfgs, hidden)]
    if isinstance(backbone.get('init_cfg'), dict) and \
            backbone['init_cfg'].get('type') == 'Pretrained':
        backbone.pop('init_cfg')  # the exported checkpoint initialises it
    if attention_narrowed:
        model_cfg['backbone'] = dict(type='mmdistill.UPopPrunedBackbone', head_dims=head_dims,
                                     backbone=backbone)
    if isinstance(model_cfg.get('init_cfg'), dict) and \
            model_cfg['init_cfg'].get('type') == 'Pretrained':
        model_cfg.pop('init_cfg')
    return model_cfg


def export_pruned(config: str, checkpoint: str, out_dir: str) -> Tuple[str, str]:
    """Write ``pruned.pth`` and ``pruned_config.py`` for a checkpoint of a pruning run (of a
    plain model or of the student of an ``mmdistill.Distiller``).

    The config is the run's own without its pruning hooks, with the pruned widths and
    ``custom_imports`` of :mod:`mmdistill.pruning` in place of this project's. A model with a
    backbone (mmpretrain's ``ImageClassifier``) gets them as :func:`pruned_model_config` writes
    them; any other (the image–text dual encoder) as ``mmdistill.UPopPrunedModel``: its dense
    config and the width of each pruned structure. ``mmpretrain.get_model(config,
    pretrained=checkpoint)`` and ``init_model`` load it wherever mmdistill (and the model's own
    code: for the dual encoder, ``projects.crossget``, which its config imports) is
    importable.

    Returns:
        The paths of the checkpoint and the config.
    """
    cfg = Config.fromfile(config)
    with safe_checkpoint_loading('checkpoint to export'):
        loaded = _load_checkpoint(checkpoint, map_location='cpu')
    if is_distiller_config(cfg):
        cfg = student_config(cfg)
        state_dict = student_state_dict(loaded, checkpoint)
    else:
        state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                      for k, v in loaded.get('state_dict', loaded).items()}
    state_dict = {k: v for k, v in state_dict.items() if 'upop_' not in k}
    scope = cfg.get('default_scope', 'mmpretrain')
    model_cfg = model_cfg_of(cfg)
    dense = build_dense(model_cfg, scope)

    out = copy.deepcopy(cfg)
    if hasattr(dense, 'backbone'):
        out.model = pruned_model_config(model_cfg, *backbone_widths(dense, state_dict))
    else:
        widths = read_widths(dense, state_dict)
        structures = {s.path: s.num_units for s in find_structures(dense)}
        out.model = dict(type='mmdistill.UPopPrunedModel', model=model_cfg,
                         widths={p: w for p, w in widths.items() if w < structures[p]})
    out.pop('data_preprocessor', None)  # folded into model
    out.custom_hooks = [h for h in out.get('custom_hooks', [])
                        if str(h.get('type', '')).split('.')[-1] not in PRUNING_HOOKS]
    imports = [m for m in out.get('custom_imports', {}).get('imports', [])
               if m != LOADER_MODULE and not m.startswith(__package__)]
    out.custom_imports = dict(imports=imports + [LOADER_MODULE], allow_failed_imports=False)
    out.load_from = None
    out.resume = False

    os.makedirs(out_dir, exist_ok=True)
    ckpt_path, cfg_path = osp.join(out_dir, 'pruned.pth'), osp.join(out_dir, 'pruned_config.py')
    meta = {k: v for k, v in loaded.get('meta', {}).items() if k in KEPT_META}
    meta['pruned_from'] = osp.abspath(checkpoint)
    torch.save({'state_dict': state_dict, 'meta': meta}, ckpt_path)
    out.dump(cfg_path)
    return ckpt_path, cfg_path

