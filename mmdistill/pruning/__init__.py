"""Structured pruning of mmpretrain transformers: the prunable structures (attention head
dimensions, MLP hidden units), ``UPopPrunedBackbone``, which builds a pruned backbone from the
config an export writes, and ``UPopPrunedModel``, which builds any other pruned model (the
image–text dual encoder) from its dense config and its widths.

Not imported by ``import mmdistill`` (it needs mmpretrain): a pruned model's config brings it in
with ``custom_imports = dict(imports=['mmdistill.pruning'])``. The search that decides what to
prune (UPop) is the project ``projects/upop``.
"""
from .attention import HeadPrunableSelfAttention
from .pruned_backbone import UPopPrunedBackbone
from .pruned_model import UPopPrunedModel
from .structures import (AttentionHeadDims, MLPHiddenUnits, TextAttentionHeadDims,
                         TextMLPHiddenUnits, find_structures, shrink_attention)

__all__ = [
    'AttentionHeadDims', 'HeadPrunableSelfAttention', 'MLPHiddenUnits', 'TextAttentionHeadDims',
    'TextMLPHiddenUnits', 'UPopPrunedBackbone', 'UPopPrunedModel', 'find_structures',
    'shrink_attention'
]
