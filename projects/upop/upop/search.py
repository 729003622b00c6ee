"""UPop's unified search: which units to prune at each step, and how far (pure tensor math).

Reference: Shi et al., "UPop: Unified and Progressive Pruning for Compressing Vision-Language
Transformers", ICML 2023.
"""
import math
from typing import Dict, List, Sequence

import torch


def check_budget(budget: float) -> float:
    """``budget`` is the share ``p`` of the prunable parameters to remove: ``0 < p < 1``."""
    if not 0 < budget < 1:
        raise ValueError(f'budget must be in (0, 1) (the share of the attention and MLP '
                         f'parameters to remove, e.g. 0.5), got {budget}')
    return float(budget)


def progressive_share(step: int, total_steps: int, budget: float) -> float:
    """UPop's progressive schedule ``π(t) = p · sin(π (t + 1) / (2T))`` for 0-based step ``t``.

    It rises from about 0 to exactly ``p`` at the last step ``t = T − 1``.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f'step {step} is outside the search (0..{total_steps - 1})')
    if step == total_steps - 1:
        return budget  # sin(π/2) is 1; say so exactly
    return budget * math.sin(math.pi * (step + 1) / (2 * total_steps))


def standardise(values: torch.Tensor) -> torch.Tensor:
    """``(x − mean) / std``; all-equal values become 0 (they carry no ranking)."""
    std = values.std() if values.numel() > 1 else values.new_zeros(())
    centred = values - values.mean()
    return centred / std if std > 0 else torch.zeros_like(centred)


def select_units(scores: Sequence[torch.Tensor], kinds: Sequence[str],
                 unit_costs: Sequence[float], share: float,
                 min_keep: int = 1) -> List[torch.Tensor]:
    """The units to prune so that they make up the share ``share`` of the total cost.

    1. Each structure's scores (accumulated mask gradients) are standardised together with all
       structures of the same kind (``attn`` / ``mlp``): the kinds' gradients have different
       scales.
    2. All units of all structures are ranked together by standardised score, highest first
       (a large positive gradient: lowering the mask lowers the loss most).
    3. The longest prefix of the ranking whose cumulative cost (each unit weighted by its
       parameter cost) is nearest to ``share · total cost`` is selected. The ``min_keep``
       lowest-ranked units of each structure are never selected: a layer keeps some attention
       and some MLP (mmpretrain's layers cannot be zero wide).

    Args:
        scores: one 1-D tensor per structure.
        kinds: the kind of each structure.
        unit_costs: parameters removed with one unit of each structure.
        share: target share of the total cost, in [0, 1).
        min_keep: units each structure keeps whatever the ranking.

    Returns:
        One boolean tensor per structure, True for the units to prune.
    """
    by_kind: Dict[str, List[int]] = {}
    for i, kind in enumerate(kinds):
        by_kind.setdefault(kind, []).append(i)
    standardised: List[torch.Tensor] = [None] * len(scores)
    for members in by_kind.values():
        joint = standardise(torch.cat([scores[i].float().flatten() for i in members]))
        for i, part in zip(members, joint.split([scores[i].numel() for i in members])):
            standardised[i] = part
    flat = torch.cat(standardised)
    costs = torch.cat([torch.full((s.numel(), ), float(c), dtype=torch.float64)
                       for s, c in zip(standardised, unit_costs)])
    protected = torch.zeros(flat.numel(), dtype=torch.bool)
    start = 0
    for part in standardised:
        lowest = torch.sort(part, stable=True).indices[:min_keep]
        protected[start + lowest] = True
        start += part.numel()
    order = torch.sort(flat, descending=True, stable=True).indices
    order = order[~protected[order]]
    cumulative = torch.cat([costs.new_zeros(1), costs[order].cumsum(0)])
    count = int(torch.argmin((cumulative - share * costs.sum()).abs()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[order[:count]] = True
    return list(chosen.split([s.numel() for s in standardised]))
