"""The structures UPop prunes in an mmpretrain transformer, and how each is masked and sliced.

Two kinds of structure, found by module type, so any model built of mmpretrain's
``MultiheadAttention`` and mmcv's ``FFN`` (ViT, DeiT, DeiT III, the CLIP vision tower) or of
mmpretrain's CLIP ``ResidualAttentionBlock`` (the CLIP text transformer) works without a change
to mmpretrain; both towers of an image–text dual encoder are found in one pass:

- ``attn``: the head dimension of one attention layer. Unit ``j`` is the ``j``-th channel of every
  head's query, key and value; one mask entry scales all ``3·H`` of them (UPop's
  ``1×1×1×1×head_dim`` mask). Removing it removes ``3·H`` rows of ``qkv`` (weight and bias) and
  ``H`` columns of ``proj``.
- ``mlp``: one hidden unit of an FFN, masked after ``fc1``; removing it removes one row of
  ``fc1`` (weight and bias) and one column of ``fc2``.

A mask is a buffer of the module it belongs to (``<attn>.upop_mask``, ``<ffn>.upop_mask``), so
it is saved in and resumed from the model's own checkpoints; beside it, ``upop_score`` holds the
mask's accumulated gradient. Masks are not parameters: no optimizer ever updates them.
"""
from functools import partial
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN
from mmpretrain.models.utils.attention import MultiheadAttention
from mmpretrain.models.utils.clip_generator_helper import ResidualAttentionBlock
from torch import nn

from .attention import HeadPrunableSelfAttention

MASK = 'upop_mask'
SCORE = 'upop_score'


class PrunableStructure:
    """One attention layer's head dimension or one FFN's hidden units, with its mask.

    Subclasses say which parameters a unit owns (:meth:`cuts`) and how the mask enters the
    forward pass (:meth:`_apply_mask`).
    """

    kind: str = ''

    def __init__(self, path: str, module: nn.Module):
        self.path = path
        self.module = module
        self._handle = None

    # --------------------------------------------------------------------- description
    @property
    def num_units(self) -> int:
        raise NotImplementedError

    @property
    def unit_cost(self) -> int:
        """Parameters removed with one unit (UPop's cost weight)."""
        raise NotImplementedError

    def cuts(self, keep: torch.Tensor) -> List[tuple]:
        """``(parameter, dim, index)`` for each parameter sliced when only ``keep`` remain."""
        raise NotImplementedError

    def width_in(self, state_dict: Dict[str, torch.Tensor]) -> Optional[int]:
        """The number of units this structure has in ``state_dict`` (``None``: not in it)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- masking
    @property
    def mask(self) -> torch.Tensor:
        return getattr(self.module, MASK)

    @property
    def score(self) -> torch.Tensor:
        return getattr(self.module, SCORE)

    @property
    def is_masked(self) -> bool:
        return MASK in self.module._buffers

    def attach_mask(self) -> None:
        """Give the module an all-ones mask (requires grad) and a zero score, and apply it."""
        if self.is_masked:
            return
        device = next(self.module.parameters()).device
        self.module.register_buffer(
            MASK, torch.ones(self.num_units, device=device, requires_grad=True))
        self.module.register_buffer(SCORE, torch.zeros(self.num_units, device=device))
        self._handle = self._masked_linear().register_forward_hook(self._apply_mask)

    def detach_mask(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        for name in (MASK, SCORE):
            if name in self.module._buffers:
                delattr(self.module, name)

    def _masked_linear(self) -> nn.Linear:
        raise NotImplementedError

    def _apply_mask(self, linear, inputs, output):
        raise NotImplementedError

    # ----------------------------------------------------------------------- slicing
    def prune(self, keep: torch.Tensor,
              optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Keep only the units ``keep`` (sorted indices). The weights are sliced in place (the
        parameter objects stay, so an optimizer keeps its references), and so is the
        optimizer's per-element state of them (momentum, Adam's moments)."""
        if len(keep) == 0:
            raise ValueError(f'{self.path}: cannot remove every unit of its {self.kind}')
        for param, dim, index in self.cuts(keep):
            state = optimizer.state.get(param, {}) if optimizer is not None else {}
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    state[key] = _slice(value, dim, index)
            param.data = _slice(param.data, dim, index)
            param.grad = None
        self._set_width(len(keep))

    def narrow_to(self, width: int, caller: str) -> None:
        """Keep the first ``width`` units, as a pruned model's config describes it (the
        export stores the kept units first); ``caller`` names the config's builder in the
        error for a width outside ``1..num_units``."""
        if not 0 < width <= self.num_units:
            raise ValueError(f'{caller}: {self.path} has {self.num_units} units; width {width} '
                             f'is not in 1..{self.num_units}')
        if width < self.num_units:
            self.prune(torch.arange(width))

    def _set_width(self, width: int) -> None:
        raise NotImplementedError


class HeadDims(PrunableStructure):
    """The head dimension of a multi-head attention, shared by all its heads.

    Masked: ``[q, k, v] ← [q, k, v] ⊙ α`` with ``α ∈ R^{head_dim}`` broadcast over heads.
    Compressed: head_dim shrinks to the kept units while the attention keeps its original scale
    ``head_dim₀^{-1/2}``, so the compressed layer computes exactly what the masked one did.
    Subclasses name the packed q/k/v projection (its output channels laid out as
    ``(3, heads, head_dims)``) and the output projection.
    """

    kind = 'attn'
    qkv_weight_name = ''

    @property
    def qkv_weight(self) -> nn.Parameter:
        return self.module.get_parameter(self.qkv_weight_name)

    @property
    def qkv_bias(self) -> Optional[nn.Parameter]:
        raise NotImplementedError

    @property
    def proj_weight(self) -> nn.Parameter:
        raise NotImplementedError

    @property
    def num_units(self) -> int:
        return self.module.head_dims

    @property
    def unit_cost(self) -> int:
        heads = self.module.num_heads
        return 3 * heads * (self.qkv_weight.shape[1] + (self.qkv_bias is not None)) + \
            heads * self.proj_weight.shape[0]

    def cuts(self, keep: torch.Tensor) -> List[tuple]:
        heads, head_dims = self.module.num_heads, self.module.head_dims
        per_head = (torch.arange(heads)[:, None] * head_dims + keep[None, :]).flatten()
        qkv_rows = (torch.arange(3)[:, None] * heads * head_dims + per_head[None, :]).flatten()
        cuts = [(self.qkv_weight, 0, qkv_rows), (self.proj_weight, 1, per_head)]
        if self.qkv_bias is not None:
            cuts.append((self.qkv_bias, 0, qkv_rows))
        return cuts

    def width_in(self, state_dict: Dict[str, torch.Tensor]) -> Optional[int]:
        weight = state_dict.get(f'{self.path}.{self.qkv_weight_name}')
        return None if weight is None else weight.shape[0] // (3 * self.module.num_heads)

    def _apply_mask(self, linear, inputs, output):
        # the q/k/v channels are laid out as (3, heads, head_dims).
        return output * self.mask.repeat(3 * self.module.num_heads)


class AttentionHeadDims(HeadDims):
    """The head dimension of an mmpretrain ``MultiheadAttention`` (``qkv`` and ``proj``)."""

    qkv_weight_name = 'qkv.weight'

    def __init__(self, path: str, attn: MultiheadAttention):
        super().__init__(path, attn)
        if attn.v_shortcut:
            raise ValueError(f'{path}: UPop cannot prune an attention with v_shortcut=True (its '
                             'value is added to the output, so its width is fixed)')
        if not isinstance(attn.qkv, nn.Linear) or attn.qkv.out_features != \
                3 * attn.num_heads * attn.head_dims:
            raise ValueError(f'{path}: expected qkv = Linear(in, 3·num_heads·head_dims), got '
                             f'{attn.qkv}')

    @property
    def qkv_bias(self) -> Optional[nn.Parameter]:
        return self.module.qkv.bias

    @property
    def proj_weight(self) -> nn.Parameter:
        return self.module.proj.weight

    def _masked_linear(self) -> nn.Module:
        return self.module.qkv

    def _set_width(self, width: int) -> None:
        shrink_attention(self.module, width)


class TextAttentionHeadDims(HeadDims):
    """The head dimension of the self-attention of a CLIP ``ResidualAttentionBlock``
    (``in_proj_weight``/``in_proj_bias`` and ``out_proj``), a :class:`HeadPrunableSelfAttention`
    that took the place of its ``torch.nn.MultiheadAttention``."""

    qkv_weight_name = 'in_proj_weight'

    @property
    def qkv_bias(self) -> Optional[nn.Parameter]:
        return self.module.in_proj_bias

    @property
    def proj_weight(self) -> nn.Parameter:
        return self.module.out_proj.weight

    def _masked_linear(self) -> nn.Module:
        return self.module.qkv

    def _set_width(self, width: int) -> None:
        self.module.head_dims = width  # its scale stays the original one


class HiddenUnits(PrunableStructure):
    """The hidden units of a two-layer MLP ``fc2(act(fc1(x)))``.

    Masked: ``fc2(act(fc1(x) ⊙ α))`` with ``α ∈ R^{hidden}``; compressed: the rows of ``fc1`` and
    columns of ``fc2`` of the kept units (exact when ``act(0) = 0``: GELU, ReLU, QuickGELU, ...).
    Subclasses name ``fc1`` and ``fc2`` inside the module.
    """

    kind = 'mlp'
    fc1_name = fc2_name = ''

    def __init__(self, path: str, module: nn.Module, activation: nn.Module):
        super().__init__(path, module)
        if activation(torch.zeros(1)).abs().item() != 0:
            raise ValueError(f'{path}: its activation {activation} is not 0 at 0, so a masked '
                             'hidden unit would still reach fc2 and pruning would not be exact')

    @property
    def fc1(self) -> nn.Linear:
        return self.module.get_submodule(self.fc1_name)

    @property
    def fc2(self) -> nn.Linear:
        return self.module.get_submodule(self.fc2_name)

    @property
    def num_units(self) -> int:
        return self.fc1.out_features

    @property
    def unit_cost(self) -> int:
        return self.fc1.in_features + (self.fc1.bias is not None) + self.fc2.out_features

    def cuts(self, keep: torch.Tensor) -> List[tuple]:
        cuts = [(self.fc1.weight, 0, keep), (self.fc2.weight, 1, keep)]
        if self.fc1.bias is not None:
            cuts.append((self.fc1.bias, 0, keep))
        return cuts

    def width_in(self, state_dict: Dict[str, torch.Tensor]) -> Optional[int]:
        weight = state_dict.get(f'{self.path}.{self.fc1_name}.weight')
        return None if weight is None else weight.shape[0]

    def _masked_linear(self) -> nn.Linear:
        return self.fc1

    def _apply_mask(self, linear, inputs, output):
        return output * self.mask

    def _set_width(self, width: int) -> None:
        self.fc1.out_features = self.fc2.in_features = width


class MLPHiddenUnits(HiddenUnits):
    """The hidden units of an mmcv ``FFN`` with two fully connected layers."""

    fc1_name, fc2_name = 'layers.0.0', 'layers.1'

    def __init__(self, path: str, ffn: FFN):
        layers = ffn.layers
        if not (len(layers) == 3 and isinstance(layers[0], nn.Sequential)
                and isinstance(layers[0][0], nn.Linear) and isinstance(layers[1], nn.Linear)):
            raise ValueError(f'{path}: UPop prunes FFNs with num_fcs=2 (fc1 = layers[0][0], '
                             f'fc2 = layers[1]); got {layers}')
        super().__init__(path, ffn, activation=layers[0][1])

    def _set_width(self, width: int) -> None:
        super()._set_width(width)
        self.module.feedforward_channels = width


class TextMLPHiddenUnits(HiddenUnits):
    """The hidden units of a CLIP ``ResidualAttentionBlock``'s MLP (``c_fc``, ``gelu``,
    ``c_proj``)."""

    fc1_name, fc2_name = 'c_fc', 'c_proj'

    def __init__(self, path: str, mlp: nn.Sequential):
        super().__init__(path, mlp, activation=mlp.gelu)


def _slice(tensor: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return tensor.index_select(dim, index.to(tensor.device)).contiguous()


def scaled_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     *args, scale: float, **kwargs) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with the logits scaled by ``scale`` instead of
    ``query.size(-1)^{-1/2}``: ``query`` is pre-scaled, since SDPA's own ``scale`` argument came
    with torch 2.1."""
    query = query * (scale * query.size(-1)**0.5)
    return F.scaled_dot_product_attention(query, key, value, *args, **kwargs)


def shrink_attention(attn: MultiheadAttention, head_dims: int) -> None:
    """Make ``attn`` compute with ``head_dims`` channels per head at its original scale.

    Sets the sizes mmpretrain's ``MultiheadAttention.forward`` reads (``head_dims``,
    ``embed_dims``: the width of the attention's output before ``proj``) and fixes the scale of
    ``softmax(q·kᵀ·scale)`` to ``original_head_dims^{-1/2}``; PyTorch's default would be
    ``head_dims^{-1/2}``. The weights must already have (or get) the matching shapes.
    """
    original = getattr(attn, 'upop_original_head_dims', attn.head_dims)
    attn.upop_original_head_dims = original
    attn.head_dims = head_dims
    attn.embed_dims = attn.num_heads * head_dims
    attn.qkv.out_features = 3 * attn.embed_dims
    attn.proj.in_features = attn.embed_dims
    attn.scaled_dot_product_attention = partial(scaled_attention, scale=original**-0.5)


def find_structures(model: nn.Module, prefix: str = '') -> List[PrunableStructure]:
    """Every prunable attention and MLP in ``model``, in module order: mmpretrain's
    ``MultiheadAttention`` and mmcv's ``FFN`` (ViT, DeiT, ...), and the attention and MLP of
    mmpretrain's CLIP ``ResidualAttentionBlock`` (the CLIP text transformer), whose
    ``torch.nn.MultiheadAttention`` is replaced here by an equivalent
    :class:`HeadPrunableSelfAttention` (same parameters) that can be narrowed.

    Raises:
        ValueError: ``model`` has none, or one of them cannot be pruned exactly.
    """
    found = []
    for name, module in model.named_modules():
        path = f'{prefix}.{name}' if prefix and name else (prefix or name)
        if type(module) is MultiheadAttention:
            found.append(AttentionHeadDims(path, module))
        elif isinstance(module, FFN):
            found.append(MLPHiddenUnits(path, module))
        elif isinstance(module, ResidualAttentionBlock):
            if isinstance(module.attn, nn.MultiheadAttention):
                module.attn = HeadPrunableSelfAttention(module.attn)
            found.append(TextAttentionHeadDims(f'{path}.attn', module.attn))
            found.append(TextMLPHiddenUnits(f'{path}.mlp', module.mlp))
    if not found:
        raise ValueError(
            f'UPop found no attention or MLP to prune in {prefix or "the model"} '
            f'({type(model).__name__}): it prunes layers built of mmpretrain\'s '
            'MultiheadAttention and mmcv\'s FFN, as in mmpretrain\'s VisionTransformer '
            '(ViT, DeiT, DeiT III), and mmpretrain\'s CLIP ResidualAttentionBlock. Point the '
            'hook at such a model (model_path=..., scope=...).')
    return found
