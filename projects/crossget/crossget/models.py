"""Config entry point: build any mmpretrain model and switch token merging on in its ViT."""
import copy
from typing import Optional, Sequence, Union

from torch import nn

from mmdistill.registry import MODELS
from mmdistill.utils import build_model_in_scope, current_scope
from .token_merging import apply_token_merging


@MODELS.register_module()
def token_merging_model(model: dict,
                        r: Union[int, Sequence[int]],
                        matcher: str = 'crossget',
                        cross_token: bool = False,
                        metric: Optional[str] = None,
                        importance_weight: float = 1.,
                        backbone: str = 'backbone',
                        data_preprocessor: Optional[dict] = None) -> nn.Module:
    """Build ``model`` (an mmpretrain model dict, e.g. ``_base_.model``) in its own scope and
    patch the ViT at ``backbone`` with :func:`~.token_merging.apply_token_merging` (``r``,
    ``matcher``, ``cross_token``, ``metric``, ``importance_weight`` are its arguments).

    The result *is* the mmpretrain model (an ``ImageClassifier``...), with the same state-dict
    keys, so plain checkpoints load into it and its checkpoints load into the plain model.
    In a config::

        model = dict(type='mmdistill.token_merging_model', model=_base_.model,
                     r=[4] * 6, matcher='crossget')
    """
    model = copy.deepcopy(model)
    if data_preprocessor is not None:
        model.setdefault('data_preprocessor', data_preprocessor)
    built = build_model_in_scope(model, model.pop('_scope_', None) or current_scope())
    try:
        vit = built.get_submodule(backbone) if backbone else built
    except AttributeError as error:
        raise AttributeError(f"the model {type(built).__name__} has no module '{backbone}' "
                             'to merge tokens in; set `backbone` to the path of its '
                             'VisionTransformer') from error
    apply_token_merging(vit, r, matcher=matcher, cross_token=cross_token, metric=metric,
                        importance_weight=importance_weight)
    return built
