"""UPop (Shi et al., ICML 2023) for mmpretrain transformers, as an OpenMMLab project.

Configs bring it in with ``custom_imports = dict(imports=['projects.upop.upop'])`` (run from
the repository root, or with it on ``PYTHONPATH``); importing it registers, in mmdistill's
registries (children of MMEngine's): ``UPopHook``, ``UniformMagnitudePruningHook`` and
``UPopPrunedBackbone``.
"""
from .attention import HeadPrunableSelfAttention
from .export import export_pruned, pruned_model_config
from .hooks import StructuredPruningHook, UniformMagnitudePruningHook, UPopHook
from .pruned_backbone import UPopPrunedBackbone
from .search import progressive_share, select_units
from .structures import (AttentionHeadDims, MLPHiddenUnits, TextAttentionHeadDims,
                         TextMLPHiddenUnits, find_structures, shrink_attention)

__all__ = [
    'AttentionHeadDims', 'HeadPrunableSelfAttention', 'MLPHiddenUnits', 'StructuredPruningHook',
    'TextAttentionHeadDims', 'TextMLPHiddenUnits', 'UPopHook', 'UPopPrunedBackbone',
    'UniformMagnitudePruningHook', 'export_pruned', 'find_structures',
    'progressive_share', 'pruned_model_config', 'select_units', 'shrink_attention'
]
