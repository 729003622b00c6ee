"""Which tokens merge into which (the matchers) and how a merge is carried out.

A matcher sees the metric of the whole sequence (B×N×C), how many tokens lead it (class,
distillation) and trail it (cross token), and returns a :class:`MergePlan` in indices of the
whole sequence: ``r`` source tokens per sample, each with the destination it merges into, and
the tokens that stay, in their order after the merge. Sources are distinct and never
destinations, so no token merges twice in one layer and no chains form; protected tokens are
never sources nor destinations. :func:`merge_tokens` then carries a plan out.
"""
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F


class MergePlan(NamedTuple):
    """A merge of ``r`` tokens in a sequence of ``N``, in indices of that sequence.

    ``src`` and ``dst`` (B×r): token ``src[b, i]`` merges into ``dst[b, i]``. ``keep``
    (B×(N−r)): the tokens that stay, in their order after the merge. ``weights`` (B×N×1): the
    ensemble weights of the tokens (``None``: a merge averages by size alone)."""
    src: torch.Tensor
    dst: torch.Tensor
    keep: torch.Tensor
    weights: Optional[torch.Tensor] = None


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


def _positions(start: int, stop: int, like: torch.Tensor) -> torch.Tensor:
    """Indices ``start..stop-1`` for each sample of ``like`` (B×…): B×(stop−start)."""
    return torch.arange(start, stop, device=like.device).expand(like.shape[0], -1)


def bipartite_soft_matching(metric: torch.Tensor, r: int, num_leading: int = 0,
                            num_trailing: int = 0,
                            guide_query: Optional[torch.Tensor] = None) -> MergePlan:
    """ToMe's bipartite soft matching (Bolya et al., "Token Merging: Your ViT But Faster",
    ICLR 2023), with ToMe's partition and token order.

    The tokens before the trailing ones alternate into set A (even positions) and set B (odd),
    the class token included: it is A's first token, and a distillation token B's first.
    Each token of A is linked to its most similar token of B (cosine similarity of the
    metric); the class token's links and the links into the distillation token are
    :math:`-\\infty`. The ``r`` most similar links merge, A's token into B's. After the merge
    the sequence is [A's unmerged tokens, B], as ToMe's ``merge`` builds it: A's tokens in
    their order when there is a class token, else in decreasing similarity of their links;
    with a distillation token, [class, distillation, the rest of A, the rest of B]. Trailing
    tokens (a cross token) take no part and stay last. ``guide_query`` is ignored.
    """
    if num_leading > 2:
        raise ValueError(f'ToMe protects a class and a distillation token; got {num_leading} '
                         'leading tokens')
    length = metric.shape[1] - num_trailing
    metric = F.normalize(metric[:, :length], dim=-1)
    scores = metric[:, 0::2] @ metric[:, 1::2].transpose(-1, -2)
    if num_leading >= 1:
        scores[:, 0, :] = float('-inf')
    if num_leading == 2:
        scores[:, :, 0] = float('-inf')
    best_similarity, best_b = scores.max(dim=-1)
    edges = best_similarity.argsort(dim=-1, descending=True)
    src, unmerged = edges[:, :r], edges[:, r:]
    if num_leading >= 1:
        unmerged = unmerged.sort(dim=-1).values
    a_kept = 2 * unmerged  # positions in the sequence: A's i-th token is 2i, B's j-th 2j + 1
    b_kept = 2 * _positions(0, scores.shape[-1], unmerged) + 1
    if num_leading == 2:
        order = [a_kept[:, :1], b_kept[:, :1], a_kept[:, 1:], b_kept[:, 1:]]
    else:
        order = [a_kept, b_kept]
    keep = torch.cat(order + [_positions(length, length + num_trailing, src)], dim=1)
    return MergePlan(src=2 * src, dst=2 * best_b.gather(1, src) + 1, keep=keep)


def complete_graph_soft_matching(metric: torch.Tensor, r: int, num_leading: int = 0,
                                 num_trailing: int = 0,
                                 guide_query: Optional[torch.Tensor] = None,
                                 importance_weight: float = 1.) -> MergePlan:
    """CrossGET's complete-graph soft matching with cross-guided ensemble (Shi et al.,
    "CrossGET: Cross-Guided Ensemble of Tokens for Accelerating Vision-Language
    Transformers", ICML 2024).

    Over the mergeable tokens (the leading and trailing ones are protected), with
    :math:`S_{ij}` the cosine similarity of the metrics of tokens i ≠ j and
    :math:`I_i = \\cos(m_i, q_c)` the importance of token i for the guide (cross or class)
    token's query :math:`q_c`:

    1. tokens are ordered by their best similarity :math:`\\max_j S_{ij}` (descending) and a
       token may pair only with tokens after it, :math:`\\hat S_{ij} = S_{ij}` if
       :math:`\\mathrm{rank}(j) > \\mathrm{rank}(i)`, else :math:`-\\infty`; of two tokens that
       are each other's best match (their best similarities are equal) the one in front
       comes first and only it counts the pair, so both do not leave;
    2. the ``r`` tokens with the lowest :math:`w I_i - \\max_j \\hat S_{ij}` (redundant and
       unimportant) are the sources; each merges into its most similar non-source token;
    3. the ensemble weights are :math:`\\omega_i = e^{w I_i}` (:func:`merge_tokens` normalises
       them over each merged group, a softmax over the group's importances).

    :math:`w` is ``importance_weight``: 1 is CrossGET's rule; 0 drops the guidance, so the
    sources are the ``r`` tokens of highest best later similarity and a merge is ToMe's
    size-weighted average (:math:`\\omega_i = 1`).

    The other tokens keep their order. Beyond the similarity matmul (which also gives the
    importances, the guide's query being one more row) the work is three passes over the N×N
    similarities (row maxima, the order mask, the masked maxima), sorts of N values and
    the r sources' rows.
    """
    if guide_query is None:
        raise ValueError('complete-graph matching needs the query of a guide token (cross or '
                         'class token); this layer recorded none')
    length = metric.shape[1]
    mergeable = metric[:, num_leading:length - num_trailing]
    size = mergeable.shape[1]
    # the guide's query rides along as one more row: one matmul gives S and I
    unit = F.normalize(torch.cat([mergeable, guide_query[:, None]], dim=1), dim=-1)
    products = unit @ unit[:, :size].transpose(-1, -2)
    similarity, importance = products[:, :size], products[:, size]
    similarity.diagonal(dim1=-2, dim2=-1).fill_(float('-inf'))

    order = similarity.amax(dim=-1).argsort(dim=-1, descending=True, stable=True)
    rank = order.argsort(dim=-1)  # the inverse permutation: rank[b, order[b, k]] = k
    # Cosines lie in [-1, 1], so lowering the pairs with an earlier token by 8 puts them below
    # every pair with a later one: the same maxima as -inf wherever a token has a later one.
    # The last token has none; its score (>= 6) then stays above every other token's (<= 2).
    best_later = torch.add(similarity, rank[:, None, :] <= rank[:, :, None],
                           alpha=-8.).amax(dim=-1)

    # sorted over the whole sequence, the protected tokens (score +inf) last: the first r are
    # the sources, the rest in position order the tokens that stay
    importance = importance_weight * importance
    by_score = F.pad(importance - best_later, (num_leading, num_trailing),
                     value=float('inf')).argsort(dim=-1)
    src, keep = by_score[:, :r], by_score[:, r:].sort(dim=-1).values
    rows = src - num_leading
    candidates = similarity.gather(1, rows[..., None].expand(-1, -1, size))
    candidates.scatter_(2, rows[:, None].expand(-1, r, -1), float('-inf'))  # no source
    dst = candidates.argmax(dim=-1) + num_leading
    weights = F.pad(importance.exp(), (num_leading, num_trailing), value=1.)[..., None]
    return MergePlan(src=src, dst=dst, keep=keep, weights=weights)


MATCHERS: Dict[str, Callable[..., MergePlan]] = {
    'tome': bipartite_soft_matching,
    'crossget': complete_graph_soft_matching,
}


def get_matcher(name: str) -> Callable[..., MergePlan]:
    """The matcher called ``name``; a ``KeyError`` lists the known ones."""
    if name not in MATCHERS:
        raise KeyError(f"unknown token matcher '{name}'; choose one of {sorted(MATCHERS)}")
    return MATCHERS[name]


def _merge_rows_(plan: MergePlan, *tensors: torch.Tensor) -> List[torch.Tensor]:
    """:func:`merge_sum` on each of ``tensors`` (B×N×·) in place: row sums and row picks of
    the flattened (B·N)×C tensors (``index_add_``/``index_select``, not ``scatter``/``gather``
    with an index expanded over the channels, which costs several times more on the CPU)."""
    batch, length = tensors[0].shape[:2]
    offsets = torch.arange(0, batch * length, length, device=plan.src.device)[:, None]
    src, dst = (plan.src + offsets).flatten(), (plan.dst + offsets).flatten()
    keep = (plan.keep + offsets).flatten()
    merged = []
    for values in tensors:
        rows = values.view(batch * length, values.shape[-1])
        rows.index_add_(0, dst, rows.index_select(0, src))
        merged.append(rows.index_select(0, keep).view(batch, plan.keep.shape[1], -1))
    return merged


def merge_sum(values: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """Add each source's row of ``values`` (B×N×C) to its destination's and keep the rows of
    ``plan.keep``, in its order: B×(N−r)×C."""
    return _merge_rows_(plan, values.clone(memory_format=torch.contiguous_format))[0]


def merge_tokens(x: torch.Tensor, sizes: torch.Tensor,
                 plan: MergePlan) -> Tuple[torch.Tensor, torch.Tensor]:
    """Carry out ``plan`` on tokens ``x`` (B×N×C) of sizes ``sizes`` (B×N×1).

    Every destination d becomes the weighted mean of itself and the sources S_d merged into it,

    .. math::
        x_d' = \\frac{\\sum_{i \\in \\{d\\} \\cup S_d} \\omega_i s_i x_i}
                    {\\sum_{i \\in \\{d\\} \\cup S_d} \\omega_i s_i}, \\qquad
        s_d' = \\sum_{i \\in \\{d\\} \\cup S_d} s_i,

    with :math:`\\omega_i = 1` for ToMe's size-weighted average; sources are dropped and the
    tokens stay in the order of ``plan.keep``. Returns the merged tokens and sizes
    (B×(N−r)×·).
    """
    if plan.weights is None:
        weighted, new_sizes = _merge_rows_(plan, x * sizes, sizes.clone())
        return weighted / new_sizes, new_sizes
    weights = sizes * plan.weights
    weighted, both = _merge_rows_(plan, x * weights, torch.cat([weights, sizes], dim=-1))
    total_weight, new_sizes = both.split(1, dim=-1)
    return weighted / total_weight, new_sizes
