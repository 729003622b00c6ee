"""Building a pruned transformer from a config that mmpretrain's own API loads.

mmpretrain's ``VisionTransformer`` config expresses each layer's MLP width
(``layer_cfgs=[dict(feedforward_channels=...), ...]``) but not a per-layer attention width
below ``embed_dims`` (its ``MultiheadAttention`` ties the width of q, k, v to the residual
width). :func:`UPopPrunedBackbone` fills that gap: it builds the backbone from its mmpretrain
config and narrows each attention layer's head dimension. The module it returns is mmpretrain's
own (``VisionTransformer``, ``DistilledVisionTransformer``, ...), so its weights, forward and
``state_dict`` keys are unchanged.
"""
from typing import Sequence

from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import nn

from mmdistill.registry import MODELS
from .structures import AttentionHeadDims, find_structures


@MODELS.register_module()
def UPopPrunedBackbone(backbone: dict, head_dims: Sequence[int]) -> nn.Module:  # noqa: N802
    """Build ``backbone`` (an mmpretrain backbone config; pruned MLP widths in its
    ``layer_cfgs``) and give its attention layers, in module order, the head dims ``head_dims``
    at their original attention scale.

    Example (written by :func:`~.export.export_pruned`)::

        backbone=dict(type='mmdistill.UPopPrunedBackbone', head_dims=[64, 40, 52, ...],
                      backbone=dict(type='VisionTransformer', arch='deit-small', ...,
                                    layer_cfgs=[dict(feedforward_channels=1152), ...]))
    """
    model = MMENGINE_MODELS.build(backbone)
    attentions = [s for s in find_structures(model) if isinstance(s, AttentionHeadDims)]
    if len(attentions) != len(head_dims):
        raise ValueError(f'head_dims has {len(head_dims)} entries; the backbone has '
                         f'{len(attentions)} attention layers')
    for attention, width in zip(attentions, head_dims):
        attention.narrow_to(width, 'UPopPrunedBackbone head_dims')
    return model
