"""Which tokens merge into which (the matchers) and how a merge is carried out.

Both matchers look only at the mergeable tokens (the caller leaves class, distillation and
cross tokens out) and return a :class:`MergePlan`: ``r`` source tokens per sample, each with
the destination it merges into. Sources are distinct and never destinations, so no token merges
twice in one layer and no chains form. :func:`merge_tokens` then carries a plan out.
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F


class MergePlan(NamedTuple):
    """``src`` and ``dst`` (B×r) index the mergeable tokens: token ``src[b, i]`` merges into
    ``dst[b, i]``. ``weights`` (B×M×1) are the ensemble weights of the tokens (``None``: a
    merge averages by size alone)."""
    src: torch.Tensor
    dst: torch.Tensor
    weights: Optional[torch.Tensor] = None

    def within(self, leading: int, trailing: int) -> 'MergePlan':
        """The same plan for a sequence with ``leading`` and ``trailing`` tokens around the
        mergeable ones (they keep weight 1 and take no part in a merge)."""
        weights = None if self.weights is None else F.pad(
            self.weights, (0, 0, leading, trailing), value=1.)
        return MergePlan(self.src + leading, self.dst + leading, weights)


def max_merges(num_tokens: int) -> int:
    """The largest ``r`` a layer with ``num_tokens`` mergeable tokens allows: half of them."""
    return num_tokens // 2


def check_r(r: int, num_tokens: int, where: str) -> None:
    """Raise a ``ValueError`` naming the layer when ``r`` exceeds :func:`max_merges`."""
    if r < 0 or r > max_merges(num_tokens):
        raise ValueError(
            f'{where}: r={r} but only {num_tokens} tokens can merge there, so r must be in '
            f'[0, {max_merges(num_tokens)}]. Lower r for this layer (pass a list of r per '
            'layer) or use a smaller schedule.')


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` (B×N×C) with every row of ``b`` (B×M×C)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)


def bipartite_soft_matching(keys: torch.Tensor, r: int,
                            guide_query: Optional[torch.Tensor] = None) -> MergePlan:
    """ToMe's bipartite soft matching (Bolya et al., "Token Merging: Your ViT But Faster",
    ICLR 2023).

    Tokens alternate into sets A (even positions) and B (odd); each token of A is linked to its
    most similar token of B by cosine similarity of the keys, and the ``r`` most similar links
    merge (A's token into B's). ``guide_query`` is ignored (ToMe has no guide).
    """
    a, b = keys[:, 0::2], keys[:, 1::2]
    best_similarity, best_b = cosine_similarity_matrix(a, b).max(dim=-1)
    chosen_a = best_similarity.argsort(dim=-1, descending=True)[:, :r]
    return MergePlan(src=2 * chosen_a, dst=2 * best_b.gather(1, chosen_a) + 1)


def complete_graph_soft_matching(keys: torch.Tensor, r: int,
                                 guide_query: Optional[torch.Tensor] = None) -> MergePlan:
    """CrossGET's complete-graph soft matching with cross-guided ensemble (Shi et al.,
    "CrossGET: Cross-Guided Ensemble of Tokens for Accelerating Vision-Language
    Transformers", ICML 2024).

    With :math:`S_{ij}` the cosine similarity of the keys of tokens i ≠ j and
    :math:`I_i = \\cos(k_i, q_c)` the importance of token i for the guide (cross or class)
    token's query :math:`q_c`:

    1. tokens are ordered by their best similarity :math:`\\max_j S_{ij}` (descending) and a
       token may pair only with tokens after it, :math:`\\hat S_{ij} = S_{ij}` if
       :math:`\\mathrm{rank}(j) > \\mathrm{rank}(i)`, else :math:`-\\infty`; of two tokens that
       are each other's best match only the first counts the pair, so both do not leave;
    2. the ``r`` tokens with the lowest :math:`I_i - \\max_j \\hat S_{ij}` (redundant and
       unimportant) are the sources; each merges into its most similar non-source token;
    3. the ensemble weights are :math:`\\omega_i = e^{I_i}` (:func:`merge_tokens` normalises
       them over each merged group, a softmax over the group's importances).
    """
    if guide_query is None:
        raise ValueError('complete-graph matching needs the query of a guide token (cross or '
                         'class token); this layer recorded none')
    keys = F.normalize(keys, dim=-1)
    similarity = keys @ keys.transpose(-1, -2)
    similarity.diagonal(dim1=-2, dim2=-1).fill_(float('-inf'))

    rank = similarity.max(dim=-1).values.argsort(dim=-1, descending=True).argsort(dim=-1)
    later = rank[:, None, :] > rank[:, :, None]
    best_later = torch.where(later, similarity, float('-inf')).max(dim=-1).values

    importance = (keys @ F.normalize(guide_query, dim=-1)[..., None]).squeeze(-1)
    src = (importance - best_later).argsort(dim=-1)[:, :r]
    is_src = torch.zeros_like(importance).scatter(1, src, 1.).bool()
    src_rows = similarity.gather(1, src[..., None].expand(-1, -1, keys.shape[1]))
    dst = src_rows.masked_fill(is_src[:, None, :], float('-inf')).argmax(dim=-1)
    return MergePlan(src=src, dst=dst, weights=importance.exp()[..., None])


MATCHERS: Dict[str, Callable[..., MergePlan]] = {
    'tome': bipartite_soft_matching,
    'crossget': complete_graph_soft_matching,
}


def get_matcher(name: str) -> Callable[..., MergePlan]:
    """The matcher called ``name``; a ``KeyError`` lists the known ones."""
    if name not in MATCHERS:
        raise KeyError(f"unknown token matcher '{name}'; choose one of {sorted(MATCHERS)}")
    return MATCHERS[name]


def kept_indices(num_tokens: int, src: torch.Tensor) -> torch.Tensor:
    """Indices (B×(N−r)) of the tokens that are not sources, in their original order."""
    keep = torch.ones(src.shape[0], num_tokens, dtype=torch.uint8, device=src.device)
    keep = keep.scatter(1, src, 0)
    order = torch.sort(keep, dim=1, descending=True, stable=True).indices
    return order[:, :num_tokens - src.shape[1]]


def merge_sum(values: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """Add each source's row of ``values`` (B×M×C) to its destination's and drop the sources:
    B×(M−r)×C, the other rows in their order."""
    channels = values.shape[-1]
    src = plan.src[..., None].expand(-1, -1, channels)
    dst = plan.dst[..., None].expand(-1, -1, channels)
    summed = values.scatter_add(1, dst, values.gather(1, src))
    keep = kept_indices(values.shape[1], plan.src)[..., None]
    return summed.gather(1, keep.expand(-1, -1, channels))


def merge_tokens(x: torch.Tensor, sizes: torch.Tensor,
                 plan: MergePlan) -> Tuple[torch.Tensor, torch.Tensor]:
    """Carry out ``plan`` on tokens ``x`` (B×M×C) of sizes ``sizes`` (B×M×1).

    Every destination d becomes the weighted mean of itself and the sources S_d merged into it,

    .. math::
        x_d' = \\frac{\\sum_{i \\in \\{d\\} \\cup S_d} \\omega_i s_i x_i}
                    {\\sum_{i \\in \\{d\\} \\cup S_d} \\omega_i s_i}, \\qquad
        s_d' = \\sum_{i \\in \\{d\\} \\cup S_d} s_i,

    with :math:`\\omega_i = 1` for ToMe's size-weighted average; sources are dropped and the
    other tokens keep their order. Returns the merged tokens and sizes (B×(M−r)×·).
    """
    weights = sizes if plan.weights is None else sizes * plan.weights
    summed = merge_sum(torch.cat([x * weights, weights, sizes], dim=-1), plan)
    weighted_sum, total_weight, new_sizes = summed.split([x.shape[-1], 1, 1], dim=-1)
    return weighted_sum / total_weight, new_sizes
