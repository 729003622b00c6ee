"""A stand-in for ``torch.nn.MultiheadAttention`` whose heads can be narrower than
``embed_dim / num_heads``, for the CLIP text transformer of mmpretrain
(``mmpretrain.models.utils.clip_generator_helper.Transformer``).

torch's attention derives the head width from the input width and the scale from the head
width, so a pruned head dimension cannot be expressed with it; this module computes the same
function from the same parameters (same names, so checkpoints load either way) with the head
width and the scale as attributes of their own.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class HeadPrunableSelfAttention(nn.Module):
    """Multi-head self-attention with a free head width ``d`` and a fixed scale ``s``:

    .. math::
        [q, k, v] = W_{in} x + b_{in}, \\quad
        y = W_o \\mathrm{concat}_h(\\mathrm{softmax}(q_h k_h^\\top s + M) v_h) + b_o

    with ``q_h, k_h, v_h ∈ R^{N×d}``, ``M`` the attention mask (CLIP's causal one) and
    ``s = d₀^{-1/2}`` for the original head width ``d₀``
    (Vaswani et al., "Attention Is All You Need", NeurIPS 2017). Built from a
    ``torch.nn.MultiheadAttention``, it takes over its parameters (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj``) and its call (``attn(x, x, x, need_weights, attn_mask)``,
    returning ``(output, head-averaged weights or None)``).

    ``qkv`` is an identity that [q, k, v] pass through (channels laid out as
    ``(3, num_heads, head_dims)``): the place where UPop's mask hooks in.
    """

    def __init__(self, attn: nn.MultiheadAttention):
        super().__init__()
        if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn \
                or attn.dropout:
            raise ValueError('UPop prunes torch MultiheadAttention layers with one packed input '
                             'projection, no bias_k/bias_v, add_zero_attn=False and dropout=0 '
                             f'(as in CLIP); got {attn}')
        self.num_heads = attn.num_heads
        self.head_dims = attn.head_dim
        self.scale = attn.head_dim**-0.5
        self.batch_first = attn.batch_first
        self.in_proj_weight = attn.in_proj_weight
        self.in_proj_bias = attn.in_proj_bias
        self.out_proj = attn.out_proj
        self.qkv = nn.Identity()

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                need_weights: bool = True, attn_mask: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if key is not query or value is not query:
            raise ValueError('HeadPrunableSelfAttention computes self-attention only: pass the '
                             'same tensor as query, key and value')
        x = query.transpose(0, 1) if self.batch_first else query  # N×B×C
        length, batch = x.shape[:2]
        qkv = self.qkv(F.linear(x, self.in_proj_weight, self.in_proj_bias))
        q, k, v = qkv.reshape(length, batch, 3, self.num_heads,
                              self.head_dims).permute(2, 1, 3, 0, 4)  # each B×H×N×d
        logits = q @ k.transpose(-2, -1) * self.scale
        if attn_mask is not None:
            logits = logits.masked_fill(attn_mask, float('-inf')) \
                if attn_mask.dtype == torch.bool else logits + attn_mask
        weights = logits.softmax(dim=-1)
        out = (weights @ v).permute(2, 0, 1, 3).reshape(length, batch, -1)
        out = self.out_proj(out)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, weights.mean(dim=1) if need_weights else None
