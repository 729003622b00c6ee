"""UPop's unified search: which units to prune at each step, and how far (pure tensor math).

Reference: Shi et al., "UPop: Unified and Progressive Pruning for Compressing Vision-Language
Transformers", ICML 2023.
"""
import math
from typing import Dict, List, Sequence

import torch

# How select_units draws the line between pruned and kept units (see there).
BOUNDARIES = ('reference', 'nearest')


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
                 boundary: str = 'reference') -> List[torch.Tensor]:
    """The units to prune so that they make up about the share ``share`` of the total cost.

    1. Each structure's scores (accumulated mask gradients) are standardised together with all
       structures of the same kind (``attn`` / ``mlp``): the kinds' gradients have different
       scales.
    2. All units of all structures are ranked together by standardised score, highest first
       (a large positive gradient: lowering the mask lowers the loss most), each unit weighted
       by its cost (``unit_costs``).
    3. The cut: with ``boundary='reference'`` (the authors' rule), the rank ``k`` whose
       cumulative cost, the ``k``-th unit included, is nearest to ``share · total cost`` sets the
       threshold ``z_k``; the units scored strictly above it are selected, the unit at the
       threshold is kept. With ``boundary='nearest'`` (this project's earlier rule, one unit
       more), the longest prefix whose cost is nearest to the target is selected, ranked
       without the protected units below.
    4. Each structure's lowest-scored unit is never selected: a layer keeps some attention and
       some MLP (the reference keeps ``z ≤ min z`` of each layer the same way; mmpretrain's
       layers cannot be zero wide).

    Args:
        scores: one 1-D tensor per structure.
        kinds: the kind of each structure.
        unit_costs: the cost of one unit of each structure (its parameters, or a weight per
            kind).
        share: target share of the total cost, in [0, 1].
        boundary: ``'reference'`` or ``'nearest'``, see 3.

    Returns:
        One boolean tensor per structure, True for the units to prune.
    """
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got '{boundary}'")
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
    target = share * costs.sum()
    if boundary == 'reference':
        protected = torch.cat([part <= part.min() for part in standardised])
        order = torch.sort(flat, descending=True, stable=True).indices
        threshold = flat[order[int(torch.argmin((costs[order].cumsum(0) - target).abs()))]]
        chosen = (flat > threshold) & ~protected
    else:
        protected = torch.zeros(flat.numel(), dtype=torch.bool)
        start = 0
        for part in standardised:
            protected[start + torch.sort(part, stable=True).indices[0]] = True
            start += part.numel()
        order = torch.sort(flat, descending=True, stable=True).indices
        order = order[~protected[order]]
        cumulative = torch.cat([costs.new_zeros(1), costs[order].cumsum(0)])
        chosen = torch.zeros(flat.numel(), dtype=torch.bool)
        chosen[order[:int(torch.argmin((cumulative - target).abs()))]] = True
    return list(chosen.split([s.numel() for s in standardised]))
