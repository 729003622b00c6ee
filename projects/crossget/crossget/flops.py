"""Count attention in mmengine's FLOPs counter.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` has no handle for
``aten::scaled_dot_product_attention`` (the op mmpretrain's ``MultiheadAttention`` calls on
torch >= 2.0) and so leaves attention out of a ViT's count. Counts are multiply-accumulates,
as for mmengine's other handles.
"""
from typing import Any, List

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

SDPA_OP = 'aten::scaled_dot_product_attention'


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-accumulates of ``softmax(q kᵀ·scale + mask) v`` for q (…×N×d), k (…×S×d),
    v (…×S×dᵥ): ``prod(…)·N·S·d`` for the logits plus ``prod(…)·N·S·dᵥ`` for the weighted sum
    (the softmax, mask and scale are elementwise and not counted, as for other ops)."""
    query, key, value = (get_shape(v) for v in inputs[:3])
    *batch, num_queries, dims = query
    num_keys, value_dims = key[-2], value[-1]
    leading = 1
    for size in batch:
        leading *= size
    return leading * num_queries * num_keys * (dims + value_dims)


def flop_analyzer(model: torch.nn.Module, inputs) -> FlopAnalyzer:
    """mmengine's FlopAnalyzer for ``model(inputs)``, with attention counted."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**{SDPA_OP: sdpa_flop_jit})
    return analyzer
