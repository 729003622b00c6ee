"""Building any pruned model (e.g. the image–text dual encoder) from a config.

:func:`~.pruned_backbone.UPopPrunedBackbone` covers a classifier's backbone, whose MLP widths
mmpretrain's own config expresses. A model with other prunable structures, such as both towers
of an image–text dual encoder (the CLIP text tower's attention is torch's, which cannot be
configured narrower at all), is described by :func:`UPopPrunedModel`: its dense config plus the
width of every pruned structure, by the structure's path.
"""
import copy
from typing import Dict, Optional

from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import nn

from mmdistill.registry import MODELS
from .structures import find_structures


@MODELS.register_module()
def UPopPrunedModel(model: dict, widths: Dict[str, int],  # noqa: N802
                    data_preprocessor: Optional[dict] = None) -> nn.Module:
    """Build ``model`` (its dense config) and narrow each structure named in ``widths`` (a
    path as :func:`~.structures.find_structures` names it, e.g. ``'text.transformer.
    resblocks.0.attn'``) to that many units: head dims of an attention, hidden units of an
    MLP, attention at its original scale. The module returned is the model's own class.
    ``data_preprocessor`` (which mmpretrain's ``get_model`` and the Runner pass to a model
    config) goes to ``model`` unless it has its own.

    Example (written by ``projects/upop``'s ``export_pruned`` for a dual encoder)::

        model = dict(type='mmdistill.UPopPrunedModel',
                     model=dict(type='mmdistill.ImageTextDualEncoder', ...),
                     widths={'vision.layers.0.attn': 27, 'text.transformer.resblocks.0.mlp': 127})
    """
    model = copy.deepcopy(model)
    if data_preprocessor is not None:
        model.setdefault('data_preprocessor', data_preprocessor)
    built = MMENGINE_MODELS.build(model)
    structures = {s.path: s for s in find_structures(built)}
    unknown = sorted(set(widths) - set(structures))
    if unknown:
        raise KeyError(f'UPopPrunedModel: {type(built).__name__} has no prunable structure '
                       f'{unknown}; it has {sorted(structures)}')
    for path, width in widths.items():
        structures[path].narrow_to(width, 'UPopPrunedModel')
    return built
