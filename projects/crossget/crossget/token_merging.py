"""Token merging on mmpretrain's ``VisionTransformer`` (ViT, DeiT, DeiT III, CLIP's vision
tower), applied to a built model without editing mmpretrain.

:func:`apply_token_merging` patches a backbone in place:

- each ``TransformerEncoderLayer`` becomes a :class:`TokenMergingLayerMixin` subclass whose
  forward is ``x = x + attn(ln1(x)); x = merge(x); x = ffn(ln2(x), identity=x)``;
- each layer's ``MultiheadAttention`` keeps its own computation; only its
  ``scaled_dot_product_attention`` is wrapped (:class:`SizeAwareAttention`) to add
  ``log(size)`` to the logits and to record the keys and the guide token's query;
- with ``cross_token=True`` a cross token, learnable per layer (zeros), is appended.

The state dict keeps mmpretrain's keys (plus ``layers.i.cross_token`` when enabled), so
checkpoints of the plain model load into the merging one and back.
"""
from functools import partial
from typing import List, Optional, Sequence, Union

import torch
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils.attention import MultiheadAttention
from torch import nn

from .matching import check_r, get_matcher, merge_sum, merge_tokens

METRICS = ('full', 'head_mean')
AUTHORS_METRIC = {'crossget': 'full', 'tome': 'head_mean'}


class TokenMergingState:
    """What the layers of one patched backbone share during a forward pass.

    Settings: ``r`` per layer, the matcher, the metric it compares (``'full'``: the
    full-width keys and guide query, all heads side by side, as CrossGET; ``'head_mean'``:
    their means over the heads, as ToMe; ``None``: the matcher's authors' choice), the weight
    of CrossGET's importance term (``importance_weight``, see
    :func:`~.matching.complete_graph_soft_matching`), how many tokens lead the sequence and
    are protected (class, distillation), whether a cross token trails it. Per pass: token
    sizes (B×N×1), the keys and guide query the current layer's attention recorded, the
    cross token each layer started with, and, with ``trace_source``, which input tokens each
    token holds (B×N×N₀).
    """

    def __init__(self, r: List[int], matcher: str, num_leading: int, cross_token: bool,
                 trace_source: bool = False, metric: Optional[str] = None,
                 importance_weight: float = 1.):
        self.r = r
        self.matcher_name = matcher
        self.matcher = get_matcher(matcher)
        if matcher == 'crossget':
            self.matcher = partial(self.matcher, importance_weight=importance_weight)
        elif importance_weight != 1:
            raise ValueError(f'importance_weight={importance_weight} weighs CrossGET\'s '
                             f'importance term; the {matcher} matcher has none (leave it 1)')
        self.importance_weight = importance_weight
        self.metric = AUTHORS_METRIC[matcher] if metric is None else metric
        if self.metric not in METRICS:
            raise ValueError(f"unknown token-merging metric '{metric}'; choose one of "
                             f'{METRICS} (or None for the matcher\'s own)')
        self.num_leading = num_leading
        self.cross_token = cross_token
        self.trace_source = trace_source
        self.reset()

    @property
    def num_trailing(self) -> int:
        return int(self.cross_token)

    def reset(self) -> None:
        self.sizes: Optional[torch.Tensor] = None
        self.source: Optional[torch.Tensor] = None
        self.keys: Optional[torch.Tensor] = None
        self.guide_query: Optional[torch.Tensor] = None
        self.cross_states: List[torch.Tensor] = []

    def start(self, x: torch.Tensor) -> None:
        """Begin a pass on tokens ``x`` (B×N×C): every token has size 1."""
        self.reset()
        self.sizes = x.new_ones(x.shape[0], x.shape[1], 1)
        if self.trace_source:
            self.source = torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand(
                x.shape[0], -1, -1)

    def attention_bias(self) -> Optional[torch.Tensor]:
        """``log(size)`` of each key (B×1×1×N), or ``None`` while no token has merged."""
        if self.sizes is None or bool((self.sizes == 1).all()):
            return None
        return self.sizes.log().transpose(1, 2)[:, None]

    def record(self, query: torch.Tensor, key: torch.Tensor) -> None:
        """Keep the keys of all tokens and, for CrossGET, the guide token's query (B×H×N×d
        each, detached) as the metric asks: the heads side by side (B×N×H·d, the projection's
        output before the split into heads) or their mean (B×N×d)."""
        guide = -1 if self.cross_token else 0
        query, key = query.detach(), key.detach()
        if self.metric == 'full':
            self.keys = key.transpose(1, 2).flatten(2)
            guide_query = query[:, :, guide].flatten(1)
        else:
            self.keys = key.mean(dim=1)
            guide_query = query[:, :, guide].mean(dim=1)
        self.guide_query = guide_query if self.matcher_name == 'crossget' else None

    def merge(self, x: torch.Tensor, layer_index: int) -> torch.Tensor:
        """Merge ``r[layer_index]`` of the unprotected tokens of ``x``."""
        r = self.r[layer_index]
        if r == 0:
            return x
        lead, trail = self.num_leading, x.shape[1] - self.num_trailing
        check_r(r, trail - lead, f'layer {layer_index} ({x.shape[1]} tokens, '
                f'{lead + self.num_trailing} protected)')
        with torch.no_grad():
            plan = self.matcher(self.keys, r, lead, self.num_trailing, self.guide_query)
        if self.source is not None:
            self.source = merge_sum(self.source, plan)
        x, self.sizes = merge_tokens(x, self.sizes, plan)
        return x


class SizeAwareAttention:
    """Proportional attention (ToMe, Bolya et al., ICLR 2023) through mmpretrain's own attention:

    .. math:: \\mathrm{softmax}\\left(\\frac{q k^\\top}{\\sqrt{d}} + \\log s\\right) v

    where :math:`s` are the key tokens' sizes, passed as the additive ``attn_mask`` of the
    attention function the ``MultiheadAttention`` was built with. It also records the keys and
    the guide query for the matcher. Not a module: the attention's parameters stay where they
    are.
    """

    def __init__(self, attention_fn, state: TokenMergingState):
        self.attention_fn = attention_fn
        self.state = state

    def __call__(self, query, key, value, dropout_p: float = 0.):
        self.state.record(query, key)
        return self.attention_fn(query, key, value, attn_mask=self.state.attention_bias(),
                                 dropout_p=dropout_p)


class TokenMergingLayerMixin:
    """An encoder layer that merges tokens between its attention and its MLP:
    ``x = x + attn(ln1(x)); x = merge(x); x = ffn(ln2(x), identity=x)``.

    With a cross token, the layer first resets it to ``stopgrad(x_cross) + cross_token``
    (CrossGET's per-layer cross token, a parameter of the layer; the first layer appends it as
    a copy of the class token) and the last layer drops it from its output.
    """
    token_merging_index: int
    token_merging_state: TokenMergingState
    cross_token: nn.Parameter

    def forward(self, x):
        state, index = self.token_merging_state, self.token_merging_index
        if index == 0:
            if state.cross_token:
                x = torch.cat([x, x[:, :1]], dim=1)
            state.start(x)
        if state.cross_token:
            cross = x[:, -1].detach() + self.cross_token
            state.cross_states.append(cross)
            x = torch.cat([x[:, :-1], cross[:, None]], dim=1)
        x = x + self.attn(self.ln1(x))
        x = state.merge(x, index)
        x = self.ffn(self.ln2(x), identity=x)
        if state.cross_token and index == len(state.r) - 1:
            x = x[:, :-1]
        return x


_MERGING_CLASSES = {}


def _merging_class(layer_class: type) -> type:
    if layer_class not in _MERGING_CLASSES:
        _MERGING_CLASSES[layer_class] = type(f'TokenMerging{layer_class.__name__}',
                                             (TokenMergingLayerMixin, layer_class), {})
    return _MERGING_CLASSES[layer_class]


def _r_per_layer(r: Union[int, Sequence[int]], num_layers: int) -> List[int]:
    r_list = [r] * num_layers if isinstance(r, int) else list(r)
    if len(r_list) != num_layers or any(not isinstance(v, int) or v < 0 for v in r_list):
        raise ValueError(f'r must be a non-negative int or a list of {num_layers} of them '
                         f'(one per layer), got {r!r}')
    return r_list


def check_schedule(r: Sequence[int], num_tokens: int, num_protected: int) -> None:
    """Check that ``r`` fits every layer of a model that starts with ``num_tokens`` tokens."""
    for index, r_layer in enumerate(r):
        check_r(r_layer, num_tokens - num_protected,
                f'layer {index} ({num_tokens} tokens, {num_protected} protected)')
        num_tokens -= r_layer


def _check_backbone(backbone: nn.Module) -> None:
    if not isinstance(backbone, VisionTransformer):
        raise TypeError(
            f'token merging needs an mmpretrain VisionTransformer (ViT, DeiT, DeiT III, CLIP '
            f'vision tower); got {type(backbone).__name__}. Point `backbone` at one.')
    for index, layer in enumerate(backbone.layers):
        missing = [name for name in ('ln1', 'attn', 'ln2', 'ffn') if not hasattr(layer, name)]
        if missing or not isinstance(layer.attn, MultiheadAttention):
            raise TypeError(
                f'layer {index} ({type(layer).__name__}) is not an encoder layer with '
                f"mmpretrain's MultiheadAttention in `attn` (missing: {missing or 'attn type'}); "
                'token merging patches `attn.scaled_dot_product_attention` and merges between '
                'attention and MLP, so it needs ln1/attn/ln2/ffn layers')
    if backbone.out_type == 'featmap':
        raise ValueError("out_type='featmap' needs the full patch grid, which merging "
                         "removes; use 'cls_token', 'avg_featmap' or 'raw'")


def apply_token_merging(backbone: nn.Module, r: Union[int, Sequence[int]],
                        matcher: str = 'crossget', cross_token: bool = False,
                        trace_source: bool = False, metric: Optional[str] = None,
                        importance_weight: float = 1.) -> TokenMergingState:
    """Patch ``backbone`` (an mmpretrain ``VisionTransformer``) in place to merge tokens.

    Args:
        backbone: the ViT to patch; its class/distillation tokens are protected.
        r: tokens merged in each layer, an int for all layers or one int per layer.
        matcher: ``'crossget'`` (complete-graph soft matching with cross-guided ensemble) or
            ``'tome'`` (bipartite soft matching).
        cross_token: append a cross token, learnable per layer (``layers[i].cross_token``,
            zeros); the CrossGET matcher then takes its query as the guide, else the class
            token's.
        trace_source: keep which input tokens each token holds (for inspection, slower).
        metric: what the matcher compares: ``'full'`` (the full-width keys and guide query,
            CrossGET's), ``'head_mean'`` (their means over the heads, ToMe's) or ``None``
            (the matcher's own: ``'full'`` for ``'crossget'``, ``'head_mean'`` for ``'tome'``).
        importance_weight: ``w`` in CrossGET's source score ``w I_i - max_j S_ij`` and
            ensemble weights ``exp(w I_i)``: 1 (CrossGET's) or 0 (no guidance: scores by
            similarity alone, size-weighted averages); ``'crossget'`` only.

    Returns:
        the state the layers share (``state.sizes``, ``state.cross_states``, ``state.source``).
    """
    _check_backbone(backbone)
    if getattr(backbone, 'token_merging', None) is not None:
        raise RuntimeError('this backbone already merges tokens; build a fresh one')
    num_layers = len(backbone.layers)
    num_leading = backbone.num_extra_tokens if backbone.cls_token is not None else 0
    if matcher == 'crossget' and num_leading == 0 and not cross_token:
        raise ValueError('the crossget matcher is guided by the class token or a cross token; '
                         'this ViT has neither: set cross_token=True or use matcher="tome"')
    state = TokenMergingState(_r_per_layer(r, num_layers), matcher, num_leading, cross_token,
                              trace_source, metric, importance_weight)
    num_tokens = backbone.pos_embed.shape[1] + int(cross_token)
    check_schedule(state.r, num_tokens, num_leading + int(cross_token))
    backbone.token_merging = state
    for index, layer in enumerate(backbone.layers):
        layer.__class__ = _merging_class(type(layer))
        layer.token_merging_index = index
        layer.token_merging_state = state
        if cross_token:
            layer.cross_token = nn.Parameter(torch.zeros(backbone.embed_dims))
        layer.attn.scaled_dot_product_attention = SizeAwareAttention(
            layer.attn.scaled_dot_product_attention, state)
    return state
