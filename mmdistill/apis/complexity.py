"""Counting a model's FLOPs with MMEngine, attention included.

MMEngine 0.10.7's ``FlopAnalyzer`` has no handler for ``aten::scaled_dot_product_attention``
(what mmpretrain's ``MultiheadAttention`` calls on torch >= 2.0), so ``q·kᵀ`` and ``A·v`` go
uncounted. :func:`count_flops` adds one. Counts are multiply-accumulates, as MMEngine's.
"""
from math import prod
from typing import Any, List

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from torch import nn

SDPA = 'aten::scaled_dot_product_attention'


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``softmax(q kᵀ) v`` for q ``(…, N, d)``, k ``(…, M, d)``, v ``(…, M, d_v)``:
    ``prod(…) · N · M · (d + d_v)`` (the softmax, like other element-wise work, is not
    counted)."""
    query, key, value = (get_shape(inputs[i]) for i in range(3))
    *batch, tokens, dims = query
    return prod(batch) * tokens * key[-2] * (dims + value[-1])


def flop_analyzer(model: nn.Module, *inputs: torch.Tensor) -> FlopAnalyzer:
    """MMEngine's ``FlopAnalyzer`` for ``model(*inputs)``, with the attention handler, quiet
    about the element-wise ops it skips by design."""
    analyzer = FlopAnalyzer(model, inputs).set_op_handle(SDPA, sdpa_flop_jit)
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def count_flops(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Total MACs of ``model(*inputs)`` (run in eval mode, without gradients)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return flop_analyzer(model, *inputs).total()
    finally:
        model.train(training)
