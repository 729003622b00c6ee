"""UPop (Shi et al., ICML 2023) for mmpretrain transformers, as an OpenMMLab project.

Configs bring it in with ``custom_imports = dict(imports=['projects.upop.upop'])`` (run from
the repository root, or with it on ``PYTHONPATH``); importing it registers, in mmdistill's
registries (children of MMEngine's): ``UPopHook`` and the baselines
``UniformMagnitudePruningHook``, ``ProgressiveMagnitudePruningHook`` and
``MagnitudePruningToWidthsHook``. What a
pruned model needs to load (its prunable structures, ``UPopPrunedBackbone`` and
``UPopPrunedModel``) lives in the installed package, :mod:`mmdistill.pruning`, so that an
exported model loads without this project.
"""
from mmdistill.pruning import (AttentionHeadDims, HeadPrunableSelfAttention, MLPHiddenUnits,
                               TextAttentionHeadDims, TextMLPHiddenUnits, UPopPrunedBackbone,
                               UPopPrunedModel, find_structures, shrink_attention)
from .export import export_pruned, pruned_model_config
from .hooks import (MagnitudePruningToWidthsHook, ProgressiveMagnitudePruningHook,
                    StructuredPruningHook, UniformMagnitudePruningHook, UPopHook, unit_magnitudes)
from .search import progressive_share, select_units

__all__ = [
    'AttentionHeadDims', 'HeadPrunableSelfAttention', 'MLPHiddenUnits',
    'MagnitudePruningToWidthsHook', 'ProgressiveMagnitudePruningHook', 'StructuredPruningHook',
    'TextAttentionHeadDims', 'TextMLPHiddenUnits', 'UPopHook', 'UPopPrunedBackbone',
    'UPopPrunedModel', 'UniformMagnitudePruningHook', 'export_pruned', 'find_structures',
    'progressive_share', 'pruned_model_config', 'select_units', 'shrink_attention',
    'unit_magnitudes'
]
