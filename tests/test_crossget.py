"""projects/crossget: token merging on mmpretrain's ViT (CrossGET and ToMe matchers),
proportional attention, the attention FLOPs handle, the CLIP-style dual encoder with cross
tokens, and the configs (merging alone and with distillation) through MMEngine's Runner."""
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner

from benchmarks.digits.run import write_digits
from mmdistill.apis.complexity import flop_analyzer
from helpers.runner import logged_history, logged_loss_terms, write_teacher_checkpoint
from projects.crossget.crossget import (ImageTextDualEncoder, apply_token_merging,
                                        bipartite_soft_matching, complete_graph_soft_matching,
                                        cross_token_js_loss, merge_tokens)
from projects.crossget.crossget.matching import MergePlan, get_matcher
from projects.crossget.crossget.token_merging import SizeAwareAttention, TokenMergingState

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROJECT = osp.join(ROOT, 'projects', 'crossget')
CONFIGS = osp.join(PROJECT, 'configs')
MATCHER_NAMES = ('crossget', 'tome')
EMBED, HEADS, LAYERS = 24, 2, 3


def tiny_vit(distilled: bool = False, out_type: str = 'cls_token') -> torch.nn.Module:
    """A real mmpretrain (Distilled)VisionTransformer: 16×16 images, patch 4, 16 patches."""
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    torch.manual_seed(0)
    cfg = dict(type='DistilledVisionTransformer' if distilled else 'VisionTransformer',
               arch=dict(embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS,
                         feedforward_channels=2 * EMBED),
               img_size=16, patch_size=4, out_type=out_type)
    model = MMPRETRAIN_MODELS.build(cfg)
    # random class/position embeddings so that the tokens differ from the start
    for name in ('cls_token', 'pos_embed', 'dist_token'):
        if hasattr(model, name):
            torch.nn.init.normal_(getattr(model, name), std=0.5)
    model.eval()  # mmpretrain backbones' train() returns None: no chaining
    return model


def images(n: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, 16, 16)


# ------------------------------------------------------------------------------ identities
@pytest.mark.parametrize('matcher', MATCHER_NAMES)
def test_r0_leaves_outputs_unchanged(matcher):
    plain = tiny_vit(out_type='raw')
    merging = copy.deepcopy(plain)
    apply_token_merging(merging, 0, matcher=matcher)
    x = images()
    assert torch.equal(plain(x)[0], merging(x)[0])


@pytest.mark.parametrize('matcher', MATCHER_NAMES)
@pytest.mark.parametrize('distilled', [False, True])
def test_sizes_sum_to_token_count_and_protected_tokens_stay_alone(matcher, distilled):
    vit = tiny_vit(distilled=distilled, out_type='raw')
    state = apply_token_merging(vit, [3, 2, 4], matcher=matcher, trace_source=True)
    out = vit(images())[0]
    num_tokens = 16 + vit.num_extra_tokens
    assert out.shape[1] == num_tokens - 9
    assert torch.equal(state.sizes.sum(dim=1).squeeze(-1), torch.full((3, ), num_tokens * 1.))
    # every input token is in exactly one output token, and a token's size counts its sources
    assert torch.equal(state.source.sum(dim=1), torch.ones(3, num_tokens))
    assert torch.equal(state.source.sum(dim=2, keepdim=True), state.sizes)
    for index in range(vit.num_extra_tokens):
        assert torch.equal(state.source[:, index], F.one_hot(
            torch.tensor(index), num_tokens).float().expand(3, -1))


def test_cross_token_is_protected_and_dropped_at_the_end():
    vit = tiny_vit(out_type='raw')
    state = apply_token_merging(vit, 4, matcher='crossget', cross_token=True, trace_source=True)
    out = vit(images())[0]
    assert out.shape[1] == 17 - 12  # the cross token left with the last layer
    # before the last layer dropped it, the cross token (the 18th input) was alone
    assert torch.equal(state.source[:, -1], F.one_hot(torch.tensor(17), 18).float().expand(3, -1))
    assert len(state.cross_states) == LAYERS


@pytest.mark.parametrize('matcher', MATCHER_NAMES)
def test_no_token_merges_twice_in_a_layer(matcher):
    torch.manual_seed(0)
    keys = torch.randn(8, 20, 6)
    keys[:, 10:] = keys[:, :10]  # exact duplicates: many equally good partners
    plan = get_matcher(matcher)(keys, 10, guide_query=torch.randn(8, 6))
    for src, dst in zip(plan.src.tolist(), plan.dst.tolist()):
        assert len(set(src)) == 10  # each source leaves once
        assert not set(src) & set(dst)  # a destination never also leaves (no chains)


def test_bipartite_matching_links_a_to_b_by_best_similarity():
    # A = tokens 0, 2; B = tokens 1, 3. Token 2 is closest to token 3, token 0 to token 1
    # but less so: with r = 1 only 2 -> 3 merges.
    keys = torch.tensor([[[1., 0.], [1., 1.], [0., 1.], [0., 1.]]])
    plan = bipartite_soft_matching(keys, 1)
    assert plan.src.tolist() == [[2]] and plan.dst.tolist() == [[3]] and plan.weights is None
    assert plan.keep.tolist() == [[0, 1, 3]]  # [A's unmerged tokens, B]


def test_complete_graph_matching_by_hand():
    # tokens 0 and 1 are identical, 2 is near them, 3 is apart; the guide points at token 3.
    keys = torch.tensor([[[1., 0., 0.], [1., 0., 0.], [1., 0.2, 0.], [0., 0., 1.]]])
    guide = torch.tensor([[0., 0., 1.]])
    plan = complete_graph_soft_matching(keys, 1, guide_query=guide)
    # 0 and 1 are each other's best (similarity 1); ordered first, 0 sees 1, 1 sees only
    # 2 and 3: scores 0 - 1, 0 - cos(1, 2), ... -> token 0 leaves, into its best non-source 1
    assert plan.src.tolist() == [[0]] and plan.dst.tolist() == [[1]]
    importance = F.cosine_similarity(keys, guide[:, None], dim=-1)
    assert torch.allclose(plan.weights.squeeze(-1), importance.exp())


def test_ordering_lets_only_one_of_two_mutual_best_matches_leave():
    """Tokens 0 and 1 are each other's best match, and so are 2 and 3. Without the ordering
    both 0 and 1 would score lowest and leave (into worse partners); with it one token of
    each pair leaves, into the other."""
    keys = torch.tensor([[[1., 0., 0.], [1., .05, 0.], [0., 1., 0.], [0., 1., .5], [0., 0., 1.]]])
    plan = complete_graph_soft_matching(keys, 2, guide_query=torch.tensor([[0., 0., 1.]]))
    pairs = sorted(zip(plan.src[0].tolist(), plan.dst[0].tolist()))
    assert pairs[0] in [(0, 1), (1, 0)] and pairs[1] in [(2, 3), (3, 2)]


# The matcher and the merge written out token by token, from the docstrings and the
# reference's description (shared/reference/compression.md beside the checkout), to check the
# vectorised code against on random inputs.
def reference_crossget_plan(keys: torch.Tensor, r: int, guide: torch.Tensor,
                            importance_weight: float = 1.):
    """Per sample: ``{source: destination}`` and the importances (unweighted), for keys B×N×C
    and guide queries B×C; a token's score is ``importance_weight`` · importance − best later
    similarity."""
    plans, importances = [], []
    for sample_keys, query in zip(keys.double(), guide.double()):
        n = len(sample_keys)
        k = [key / key.norm() for key in sample_keys]  # each token's key has unit length
        sim = [[float(k[i] @ k[j]) for j in range(n)] for i in range(n)]
        best = [max(sim[i][j] for j in range(n) if j != i) for i in range(n)]
        # best similarity, descending; equal ones (mutual best matches) in position order
        order = sorted(range(n), key=lambda i: (-best[i], i))
        place = {token: rank for rank, token in enumerate(order)}
        best_later = [max([sim[i][j] for j in range(n) if place[j] > place[i]],
                          default=-math.inf) for i in range(n)]
        importance = [float(k[i] @ (query / query.norm())) for i in range(n)]
        scores = [importance_weight * importance[i] - best_later[i] for i in range(n)]
        sources = sorted(range(n), key=lambda i: scores[i])[:r]
        plans.append({s: max((j for j in range(n) if j != s and j not in sources),
                             key=lambda j: sim[s][j]) for s in sources})
        importances.append(importance)
    return plans, torch.tensor(importances)


def plan_as_dicts(plan: MergePlan, offset: int = 0) -> list:
    """Per sample ``{source: destination}``, in indices less ``offset`` (leading tokens)."""
    return [{s - offset: d - offset for s, d in zip(src, dst)}
            for src, dst in zip(plan.src.tolist(), plan.dst.tolist())]


def reference_merge(x: torch.Tensor, sizes: torch.Tensor, pairs: list, weights: torch.Tensor):
    """Each destination becomes the (weight · size)-weighted mean of its group; sources go,
    the other tokens keep their order."""
    merged, merged_sizes = [], []
    for b, sample_pairs in enumerate(pairs):
        tokens, token_sizes = [], []
        for d in range(x.shape[1]):
            if d in sample_pairs:
                continue
            group = [d] + [s for s, dst in sample_pairs.items() if dst == d]
            w = [float(weights[b, i]) * float(sizes[b, i]) for i in group]
            tokens.append(sum(wi * x[b, i] for wi, i in zip(w, group)) / sum(w))
            token_sizes.append(sum(float(sizes[b, i]) for i in group))
        merged.append(torch.stack(tokens))
        merged_sizes.append(token_sizes)
    return torch.stack(merged), torch.tensor(merged_sizes)[..., None]


def test_complete_graph_matching_on_random_keys_matches_the_written_out_rule():
    """Random keys and a random guide query, several samples: every step of the rule (keys
    normalised per token, order by best similarity descending, later-only pairing, importance
    minus best later similarity, destination = best non-source) against the loop above."""
    torch.manual_seed(3)
    keys, guide = torch.randn(4, 12, 6) * 3, torch.randn(4, 6)
    plan = complete_graph_soft_matching(keys, 4, guide_query=guide)
    expected, importance = reference_crossget_plan(keys, 4, guide)
    assert plan_as_dicts(plan) == expected
    torch.testing.assert_close(plan.weights.squeeze(-1), importance.exp().float())
    # the keys' scales differ per token: normalising each key, not each feature over the
    # tokens, is what the cosine similarity asks for
    scaled = keys * torch.rand(4, 12, 1) * 10
    assert plan_as_dicts(complete_graph_soft_matching(scaled, 4, guide_query=guide)) == expected


@pytest.mark.parametrize('weight', [0.5, 4.])
def test_importance_weight_scales_the_importance_in_score_and_ensemble(weight):
    """With weight w, the source score is w·I − best later similarity and the ensemble
    weights are exp(w·I), against the loop above; at w = 4 the importance outweighs the
    similarity and other tokens leave than with CrossGET's w = 1."""
    torch.manual_seed(5)
    keys, guide = torch.randn(4, 12, 6), torch.randn(4, 6)
    plan = complete_graph_soft_matching(keys, 4, guide_query=guide, importance_weight=weight)
    expected, importance = reference_crossget_plan(keys, 4, guide, importance_weight=weight)
    assert plan_as_dicts(plan) == expected
    torch.testing.assert_close(plan.weights.squeeze(-1), (weight * importance).exp().float())
    if weight == 4.:
        assert expected != reference_crossget_plan(keys, 4, guide)[0]


def test_importance_weight_0_merges_the_most_redundant_tokens_by_size():
    """Without the importance term the sources are the r tokens whose best later similarity
    (the order by best similarity, each token pairing only with the tokens after it) is the
    highest, and every ensemble weight is 1: a merge is the size-weighted average."""
    torch.manual_seed(7)
    keys, guide = torch.randn(3, 14, 5), torch.randn(3, 5)
    plan = complete_graph_soft_matching(keys, 5, guide_query=guide, importance_weight=0.)
    for sample_keys, src in zip(keys.double(), plan.src.tolist()):
        sim = F.cosine_similarity(sample_keys[:, None], sample_keys[None], dim=-1).tolist()
        best = [max(row[:i] + row[i + 1:]) for i, row in enumerate(sim)]
        order = sorted(range(14), key=lambda i: (-best[i], i))
        best_later = [max([sim[i][j] for j in order[order.index(i) + 1:]], default=-math.inf)
                      for i in range(14)]
        assert sorted(src) == sorted(sorted(range(14), key=lambda i: -best_later[i])[:5])
    assert torch.equal(plan.weights, torch.ones(3, 14, 1))


def test_importance_weight_reaches_the_matcher_from_the_config():
    """``importance_weight`` goes from the model config through ``apply_token_merging`` to
    the matcher; ToMe has no importance term and refuses a weight other than 1."""
    torch.manual_seed(9)
    query, key = torch.randn(2, HEADS, 10, 4), torch.randn(2, HEADS, 10, 4)
    cfg = Config.fromfile(osp.join(CONFIGS, 'crossget_vit-p4_digits.py'))
    cfg.model.importance_weight = 0.
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        state = MODELS.build(cfg.model).backbone.token_merging
    assert state.importance_weight == 0.
    state.record(query, key)
    plan = state.matcher(state.keys, 3, 1, 0, state.guide_query)
    expected = complete_graph_soft_matching(state.keys, 3, 1, 0, state.guide_query,
                                            importance_weight=0.)
    assert torch.equal(plan.src, expected.src) and torch.equal(plan.weights, expected.weights)
    assert not torch.equal(plan.weights, complete_graph_soft_matching(
        state.keys, 3, 1, 0, state.guide_query).weights)
    with pytest.raises(ValueError, match="importance_weight=0.0 weighs CrossGET's.*tome"):
        apply_token_merging(tiny_vit(), 1, matcher='tome', importance_weight=0.)


def test_cross_guided_merge_of_random_tokens_matches_the_weighted_means():
    """Several samples, random tokens, sizes and importances, a plan from the matcher with
    two sources per destination allowed: merged tokens and sizes against the loop above."""
    torch.manual_seed(4)
    x, sizes = torch.randn(3, 10, 5), torch.randint(1, 4, (3, 10, 1)).float()
    keys, guide = torch.randn(3, 10, 4), torch.randn(3, 4)
    plan = complete_graph_soft_matching(keys, 5, guide_query=guide)
    pairs = plan_as_dicts(plan)
    assert any(len(set(dst)) < len(dst) for dst in plan.dst.tolist())  # groups of three
    merged, new_sizes = merge_tokens(x, sizes, plan)
    expected, expected_sizes = reference_merge(x, sizes, pairs, plan.weights.squeeze(-1))
    torch.testing.assert_close(merged, expected)
    assert torch.equal(new_sizes, expected_sizes)

@pytest.mark.parametrize('lead,trail', [(1, 1), (2, 0)])
def test_complete_graph_matching_leaves_protected_tokens_alone_and_keeps_the_order(lead, trail):
    """A whole sequence with protected tokens in front (class, distillation) and behind (cross
    token): the plan is the written-out rule's over the tokens between them, the protected
    tokens weigh 1 and stay where they are, the other tokens keep their order; the merged
    tokens and sizes are the weighted means written out."""
    torch.manual_seed(8)
    x, keys = torch.randn(3, 23, 5), torch.randn(3, 23, 6)
    guide, sizes = torch.randn(3, 6), torch.randint(1, 4, (3, 23, 1)).float()
    plan = complete_graph_soft_matching(keys, 6, lead, trail, guide)
    expected, importance = reference_crossget_plan(keys[:, lead:23 - trail], 6, guide)
    assert plan_as_dicts(plan, offset=lead) == expected
    for keep, pairs in zip(plan.keep.tolist(), expected):
        assert keep == [i for i in range(23) if i - lead not in pairs]
    weights = torch.ones(3, 23)
    weights[:, lead:23 - trail] = importance.exp()
    torch.testing.assert_close(plan.weights.squeeze(-1), weights)
    merged, new_sizes = merge_tokens(x, sizes, plan)
    pairs = [{s + lead: d + lead for s, d in sample.items()} for sample in expected]
    expected_x, expected_sizes = reference_merge(x, sizes, pairs, weights)
    torch.testing.assert_close(merged, expected_x)
    assert torch.equal(new_sizes, expected_sizes)


def test_protected_tokens_never_merge_even_when_every_other_token_scores_above_zero():
    """Orthogonal keys (no token resembles another: best-later similarity 0, the last
    token's −8) and a guide query equally close to all (importance 1/√8): every mergeable
    token's score I − max Ŝ is positive. The class token in front and the cross token behind
    still never merge nor receive a merge (their score is +∞, not 0) and stay first and last."""
    n = 8
    keys = torch.cat([torch.ones(1, 1, n), torch.eye(n)[None], torch.ones(1, 1, n)], dim=1)
    plan = complete_graph_soft_matching(keys, 4, num_leading=1, num_trailing=1,
                                        guide_query=torch.ones(1, n))
    merging = set(plan.src.flatten().tolist()) | set(plan.dst.flatten().tolist())
    assert not merging & {0, n + 1}
    assert plan.keep[0, 0] == 0 and plan.keep[0, -1] == n + 1


def test_tome_leaves_a_trailing_token_out_of_its_partition():
    """ToMe with a trailing (cross) token plans what it plans for the sequence without it;
    the trailing token stays last. More than a class and a distillation token in front is
    refused."""
    torch.manual_seed(3)
    keys = torch.randn(2, 11, 4)
    with_cross = bipartite_soft_matching(keys, 3, num_leading=1, num_trailing=1)
    without = bipartite_soft_matching(keys[:, :10], 3, num_leading=1)
    assert torch.equal(with_cross.src, without.src) and torch.equal(with_cross.dst, without.dst)
    assert torch.equal(with_cross.keep, torch.cat([without.keep, torch.full((2, 1), 10)], 1))
    with pytest.raises(ValueError, match='got 3 leading tokens'):
        bipartite_soft_matching(keys, 1, num_leading=3)


def tome_step_written_out(x: torch.Tensor, sizes: torch.Tensor, metric: torch.Tensor, r: int,
                          num_leading: int):
    """ToMe's step (Bolya et al., ICLR 2023), one sample at a time, from its description:
    positions 0, 2, 4... form set A, 1, 3, 5... set B; each token of A links to the token of
    B with the most similar metric (cosine), the class token (A's first) links nowhere and a
    distillation token (B's first) takes no link; the r strongest links merge, A's token into
    B's, as size-weighted means; the sequence becomes [A's unmerged tokens, B] — A's tokens in
    position order with a class token, else strongest link first — and with a distillation
    token [class, distillation, rest of A, rest of B]."""
    merged_x, merged_sizes = [], []
    for tokens, token_sizes, keys in zip(x, sizes[..., 0].tolist(), metric.double()):
        unit = [key / key.norm() for key in keys]
        a_set, b_set = list(range(0, len(keys), 2)), list(range(1, len(keys), 2))
        links = {}
        for a in a_set:
            targets = [b for b in b_set if not (num_leading == 2 and b == 1)]
            best = max(targets, key=lambda b: float(unit[a] @ unit[b]))
            links[a] = (-math.inf if num_leading and a == 0 else float(unit[a] @ unit[best]),
                        best)
        by_link = sorted(a_set, key=lambda a: -links[a][0])
        merging, unmerged = by_link[:r], by_link[r:]
        if num_leading:
            unmerged = sorted(unmerged)
        order = unmerged + b_set
        if num_leading == 2:
            order = [unmerged[0], b_set[0]] + unmerged[1:] + b_set[1:]
        groups = [[t] + [a for a in merging if links[a][1] == t] for t in order]
        merged_sizes.append([sum(token_sizes[i] for i in group) for i in [0] for group in groups])
        merged_x.append(torch.stack([sum(token_sizes[i] * tokens[i] for i in group) /
                                     sum(token_sizes[i] for i in group) for group in groups]))
    return torch.stack(merged_x), torch.tensor(merged_sizes)[..., None]


@pytest.mark.parametrize('num_leading,num_tokens', [(0, 20), (1, 21), (1, 20), (2, 22)])
def test_tome_step_is_tomes_algorithm(num_leading, num_tokens):
    """The project's ToMe step (attention's q and k recorded, then the merge; random tokens,
    sizes and keys, three samples, class and distillation tokens) against ToMe's algorithm
    written out: the same merged tokens, in the same order, with the same sizes."""
    torch.manual_seed(num_tokens + num_leading)
    query, key = torch.randn(3, HEADS, num_tokens, 4), torch.randn(3, HEADS, num_tokens, 4)
    x, sizes = torch.randn(3, num_tokens, 5), torch.randint(1, 4, (3, num_tokens, 1)).float()
    state = TokenMergingState([6], 'tome', num_leading=num_leading, cross_token=False)
    state.sizes = sizes
    state.record(query, key)
    merged = state.merge(x, 0)
    expected, expected_sizes = tome_step_written_out(x, sizes, key.mean(dim=1), 6, num_leading)
    torch.testing.assert_close(merged, expected.float())
    assert torch.equal(state.sizes, expected_sizes)


def test_recorded_metric_is_full_width_by_default_and_head_means_on_request():
    """CrossGET's metric (its default) is the full-width keys and guide query, the heads side
    by side as the qkv projection gives them before the split into heads; ``'head_mean'``
    averages over the heads, as ToMe's default does. The guide is the last token's query with
    a cross token, the first (class) token's without."""
    torch.manual_seed(6)
    qkv = torch.randn(2, 7, 3, 3, 4)  # B×N×(q, k, v)×H×d: mmpretrain's qkv output
    query, key = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)  # B×H×N×d
    for cross_token, guide in ((True, 6), (False, 0)):
        full = TokenMergingState([1], 'crossget', num_leading=1, cross_token=cross_token)
        full.record(query, key)
        assert full.metric == 'full'
        assert torch.equal(full.keys, qkv[:, :, 1].reshape(2, 7, 12))
        assert torch.equal(full.guide_query, qkv[:, guide, 0].reshape(2, 12))
        mean = TokenMergingState([1], 'crossget', num_leading=1, cross_token=cross_token,
                                 metric='head_mean')
        mean.record(query, key)
        hand = (query[:, 0, guide] + query[:, 1, guide] + query[:, 2, guide]) / 3
        torch.testing.assert_close(mean.guide_query, hand)
        torch.testing.assert_close(mean.keys, (key[:, 0] + key[:, 1] + key[:, 2]) / 3)
    tome = TokenMergingState([1], 'tome', num_leading=1, cross_token=False)
    tome.record(query, key)
    assert tome.metric == 'head_mean' and tome.guide_query is None
    torch.testing.assert_close(tome.keys, (key[:, 0] + key[:, 1] + key[:, 2]) / 3)
    with pytest.raises(ValueError, match="metric 'mean'.*'full', 'head_mean'"):
        TokenMergingState([1], 'crossget', 1, False, metric='mean')


@pytest.mark.parametrize('metric', ['full', 'head_mean'])
def test_non_zero_cross_tokens_guide_the_matching_in_every_layer(metric):
    """With trained (non-zero) cross tokens, the cross token differs from the class token, and
    each layer's matcher gets the keys of all tokens and, as the guide, the cross token's
    query, recomputed here from the layer's input with its own ln1 and qkv (full width: the
    heads side by side; or their means); its plan over the mergeable tokens is the
    written-out rule's, for each of the three samples. The two metrics choose differently."""
    vit = tiny_vit(out_type='raw')
    state = apply_token_merging(vit, 2, matcher='crossget', cross_token=True, metric=metric)
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in vit.layers:
            layer.cross_token.normal_()
    inputs, calls, matcher = {}, [], state.matcher

    def recording_matcher(keys, r, num_leading, num_trailing, guide):
        plan = matcher(keys, r, num_leading, num_trailing, guide)
        calls.append((keys, (num_leading, num_trailing), guide, plan))
        return plan
    state.matcher = recording_matcher
    for index, layer in enumerate(vit.layers):
        layer.register_forward_pre_hook(
            lambda module, args, index=index: inputs.__setitem__(index, args[0]))
    other_metric_differs = False
    with torch.no_grad():
        vit(images())
        for index, layer in enumerate(vit.layers):
            x = inputs[index]
            if index == 0:
                x = torch.cat([x, x[:, :1]], dim=1)  # the cross token starts as the class token
            cross = x[:, -1] + layer.cross_token
            torch.testing.assert_close(state.cross_states[index], cross)
            x = torch.cat([x[:, :-1], cross[:, None]], dim=1)
            qkv = layer.attn.qkv(layer.ln1(x)).reshape(*x.shape[:2], 3, HEADS, EMBED // HEADS)
            by_metric = {'full': (qkv[:, :, 0].flatten(2), qkv[:, :, 1].flatten(2)),
                         'head_mean': (qkv[:, :, 0].mean(dim=2), qkv[:, :, 1].mean(dim=2))}
            query, key = by_metric[metric]
            keys, protected, guide, plan = calls[index]
            assert protected == (1, 1)  # the class and the cross token
            torch.testing.assert_close(guide, query[:, -1])
            assert not torch.allclose(guide, query[:, 0], atol=1e-2)  # the class token's
            torch.testing.assert_close(keys, key)
            expected, importance = reference_crossget_plan(key[:, 1:-1], 2, query[:, -1])
            assert plan_as_dicts(plan, offset=1) == expected
            torch.testing.assert_close(plan.weights[:, 1:-1, 0], importance.exp().float())
            query, key = by_metric['head_mean' if metric == 'full' else 'full']
            other, _ = reference_crossget_plan(key[:, 1:-1], 2, query[:, -1])
            other_metric_differs |= other != expected
    assert other_metric_differs


def test_cross_guided_ensemble_is_a_size_aware_softmax_average():
    x = torch.tensor([[[1., 0.], [0., 1.], [5., 5.]]])
    sizes = torch.tensor([[[2.], [1.], [1.]]])
    importance = torch.tensor([[0.3, -0.2, 0.0]])
    plan = MergePlan(src=torch.tensor([[0]]), dst=torch.tensor([[1]]),
                     keep=torch.tensor([[1, 2]]), weights=importance.exp()[..., None])
    merged, new_sizes = merge_tokens(x, sizes, plan)
    w_src, w_dst = 2 * math.exp(0.3), 1 * math.exp(-0.2)
    expected = torch.tensor([w_src * 1., w_dst * 1.]) / (w_src + w_dst)
    assert torch.allclose(merged[0, 0], expected)
    assert torch.equal(merged[0, 1], x[0, 2])
    assert new_sizes.squeeze(-1).tolist() == [[3., 1.]]
    # ToMe (no weights): the plain size-weighted mean
    tome, _ = merge_tokens(x, sizes, plan._replace(weights=None))
    assert torch.allclose(tome[0, 0], torch.tensor([2., 1.]) / 3)


def test_proportional_attention_counts_a_merged_token_as_its_copies():
    """Attention over [a, b] with b of size 2 equals attention over [a, b, b]."""
    torch.manual_seed(0)
    q = torch.randn(1, 2, 2, 4)
    k, v = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
    state = TokenMergingState([1], 'tome', num_leading=0, cross_token=False)
    state.sizes = torch.tensor([[[1.], [2.]]])
    attention = SizeAwareAttention(F.scaled_dot_product_attention, state)
    with_sizes = attention(q, k, v)
    copies = F.scaled_dot_product_attention(q, torch.cat([k, k[:, :, 1:]], 2),
                                            torch.cat([v, v[:, :, 1:]], 2))
    assert torch.allclose(with_sizes, copies, atol=1e-6)
    assert torch.equal(state.keys, k.mean(dim=1))


# --------------------------------------------------------------------------------- errors
def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match=r'r=9 .* r must be in \[0, 8\]'):
        apply_token_merging(tiny_vit(), 9)
    with pytest.raises(ValueError, match=r'layer 2 .* r must be in \[0, 2\]'):  # 16, 10, 5
        apply_token_merging(tiny_vit(), [6, 5, 3])
    with pytest.raises(ValueError, match='list of 3'):
        apply_token_merging(tiny_vit(), [1, 1])
    with pytest.raises(KeyError, match="unknown token matcher 'tomato'.*crossget"):
        apply_token_merging(tiny_vit(), 1, matcher='tomato')
    with pytest.raises(ValueError, match='featmap'):
        apply_token_merging(tiny_vit(out_type='featmap'), 1)
    vit = tiny_vit()
    vit.layers[1].attn = torch.nn.MultiheadAttention(EMBED, HEADS)
    with pytest.raises(TypeError, match="layer 1 .*mmpretrain's MultiheadAttention"):
        apply_token_merging(vit, 1)
    resnet = dict(type='ImageClassifier', backbone=dict(type='ResNet_CIFAR', depth=18),
                  neck=dict(type='GlobalAveragePooling'),
                  head=dict(type='LinearClsHead', num_classes=2, in_channels=512))
    with pytest.raises(TypeError, match='needs an mmpretrain VisionTransformer.*ResNet_CIFAR'):
        MODELS.build(dict(type='mmdistill.token_merging_model', model=resnet, r=1,
                          _scope_='mmpretrain'))


def test_r_too_large_for_a_larger_input_is_caught_at_run_time():
    vit = tiny_vit()
    apply_token_merging(vit, [4, 4, 0], matcher='tome')
    with pytest.raises(ValueError, match='layer 1'):
        vit(torch.randn(1, 3, 12, 12))  # 9 patches: 8 then 4 mergeable tokens


# ---------------------------------------------------------------------------------- FLOPs
@pytest.mark.parametrize('matcher', MATCHER_NAMES)
def test_attention_flops_handle_matches_a_hand_count(matcher):
    vit = tiny_vit()
    apply_token_merging(vit, [3, 2, 4], matcher=matcher)
    batch = 2
    counts = flop_analyzer(vit, images(batch)).by_operator()
    head_dims = EMBED // HEADS
    tokens = [17, 14, 12]  # tokens entering each layer's attention
    hand = sum(batch * HEADS * n * n * 2 * head_dims for n in tokens)
    assert counts['scaled_dot_product_attention'] == hand
    # and the linear layers see the merged token counts too: qkv + proj before merging, the
    # MLP (2 × C × 2C) after it
    after = [14, 12, 8]
    linear = sum(batch * (n * EMBED * 4 * EMBED) for n in tokens)
    linear += sum(batch * (n * 4 * EMBED * EMBED) for n in after)
    assert counts['linear'] == linear


# ------------------------------------------------------------------------- dual encoder
def tiny_dual_encoder(cross: bool) -> ImageTextDualEncoder:
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='mmdistill.ImageTextDualEncoder',
        vision=dict(type='VisionTransformer', img_size=16, patch_size=4,
                    arch=dict(embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS,
                              feedforward_channels=2 * EMBED)),
        text=dict(width=16, layers=LAYERS, heads=2),
        class_prompts=['a photo of the digit zero', 'a photo of the digit one', 'a one'],
        embed_dims=8,
        token_merging=dict(r=2, matcher='crossget', cross_token=cross),
        text_cross_token=cross))


def digit_batch(n: int = 4):
    from mmpretrain.structures import DataSample
    return images(n), [DataSample().set_gt_label(i % 3) for i in range(n)]


def test_cross_tokens_are_the_only_new_parameters_and_the_cross_loss_reaches_only_them():
    plain, crossget = tiny_dual_encoder(cross=False), tiny_dual_encoder(cross=True)
    new = set(dict(crossget.named_parameters())) - set(dict(plain.named_parameters()))
    assert new == {f'vision.layers.{i}.cross_token' for i in range(LAYERS)} | {
        'text.cross_tokens'}

    inputs, samples = digit_batch()
    losses = crossget.loss(inputs, samples)
    assert set(losses) == {'loss_itc', 'loss_cross'}
    losses['loss_cross'].backward()
    with_grad = {name for name, p in crossget.named_parameters()
                 if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == new  # the cross-token loss trains the cross tokens and nothing else
    crossget.zero_grad()
    losses['loss_itc'].backward()
    # the vision cross tokens take part in attention: the task loss reaches them too
    assert crossget.vision.layers[0].cross_token.grad.abs().sum() > 0


def test_text_cross_token_leaves_text_features_unchanged():
    plain, crossget = tiny_dual_encoder(cross=False), tiny_dual_encoder(cross=True)
    crossget.text.load_state_dict(plain.text.state_dict(), strict=False)
    with torch.no_grad():
        crossget.text.cross_tokens.normal_()
    tokens = plain.prompt_tokens
    assert torch.allclose(plain.text(tokens), crossget.text(tokens), atol=1e-6)
    assert crossget.text.cross_states[0].shape == (3, 16)


def test_cross_token_loss_is_jensen_shannon_form():
    p_logits = torch.tensor([[0., 1., 2.]])
    q_logits = torch.tensor([[2., 0., 0.]])
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    m = (p + q) / 2
    hand = ((m * (m / p).log()).sum() + (m * (m / q).log()).sum()) / 2
    assert torch.allclose(cross_token_js_loss(p_logits, q_logits), hand)
    assert cross_token_js_loss(p_logits, p_logits).abs() < 1e-7


def hand_js_rows(p_logits: torch.Tensor, q_logits: torch.Tensor) -> list:
    """Each row's ½[KL(M‖P) + KL(M‖Q)], P and Q softmaxes of the rows, written out."""
    rows = []
    for p_row, q_row in zip(p_logits.tolist(), q_logits.tolist()):
        p = [math.exp(v) / sum(math.exp(u) for u in p_row) for v in p_row]
        q = [math.exp(v) / sum(math.exp(u) for u in q_row) for v in q_row]
        m = [(a + b) / 2 for a, b in zip(p, q)]
        rows.append((sum(mi * math.log(mi / pi) for mi, pi in zip(m, p))
                     + sum(mi * math.log(mi / qi) for mi, qi in zip(m, q))) / 2)
    return rows


def test_cross_token_loss_averages_over_rows():
    """Several rows (layers × samples) with different divergences: the loss is the mean of
    the rows' divergences."""
    torch.manual_seed(7)
    p_logits, q_logits = torch.randn(5, 4) * 2, torch.randn(5, 4) * 2
    rows = hand_js_rows(p_logits, q_logits)
    assert len(set(rows)) == 5
    assert cross_token_js_loss(p_logits, q_logits).item() == pytest.approx(sum(rows) / 5,
                                                                          rel=1e-5)


def hand_logits(model: ImageTextDualEncoder, inputs: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
    """e^t · cos(W_v f_v(x_i), W_t f_t(y_j)) from the two towers' features, the scale
    e^t = 1/0.07 as initialised (below the clamp at 100)."""
    image = model.vision(inputs)[-1] @ model.image_projection.weight.t()
    text = model.text(tokens) @ model.text_projection.weight.t()
    cosine = (image / image.norm(dim=1, keepdim=True)) @ (text / text.norm(dim=1,
                                                                        keepdim=True)).t()
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    return cosine / 0.07


def hand_contrastive_halves(logits: torch.Tensor, labels: list) -> tuple:
    """CE(ℓ, T) and CE(ℓᵀ, T) with T_ij = [y_i = y_j] / #{k: y_k = y_i}, written out: each
    image against all texts, and each text against all images."""
    n = len(labels)
    target = [[float(labels[i] == labels[j]) / labels.count(labels[i]) for j in range(n)]
              for i in range(n)]
    image_to_text = -sum(target[i][j] * (logits[i, j] - logits[i].logsumexp(0)).item()
                         for i in range(n) for j in range(n)) / n
    text_to_image = -sum(target[j][i] * (logits[i, j] - logits[:, j].logsumexp(0)).item()
                         for i in range(n) for j in range(n)) / n
    return image_to_text, text_to_image


@pytest.mark.parametrize('cross', [False, True])
def test_dual_encoder_losses_by_hand(cross):
    """A batch of five images with repeated classes: L_itc is the symmetric contrastive loss
    computed above, weighted (1 − w) with cross tokens; L_cross is w times the mean JS-form
    divergence of the cross tokens of both towers (all layers), each through its tower's final
    LayerNorm and projection."""
    model = tiny_dual_encoder(cross=cross).eval()
    inputs, samples = digit_batch(5)
    labels = [0, 1, 2, 0, 1]
    assert [int(s.gt_label) for s in samples] == labels
    with torch.no_grad():
        losses = model.loss(inputs, samples)
        logits = hand_logits(model, inputs, model.prompt_tokens[labels])
    image_to_text, text_to_image = hand_contrastive_halves(logits, labels)
    assert abs(image_to_text - text_to_image) > 0.05  # a loss with one half would not match
    itc = (image_to_text + text_to_image) / 2
    if not cross:
        assert set(losses) == {'loss_itc'}
        assert losses['loss_itc'].item() == pytest.approx(itc, rel=1e-5)
        return
    assert losses['loss_itc'].item() == pytest.approx(0.5 * itc, rel=1e-5)
    vision_ln, text_ln = model.vision.ln1, model.text.ln_final
    vision = F.layer_norm(torch.cat(model.vision.token_merging.cross_states), (EMBED, ),
                          vision_ln.weight, vision_ln.bias, vision_ln.eps)
    text = F.layer_norm(torch.cat(model.text.cross_states), (16, ), text_ln.weight,
                        text_ln.bias, text_ln.eps)
    rows = hand_js_rows(vision @ model.image_projection.weight.t(),
                        text @ model.text_projection.weight.t())
    assert len(rows) == LAYERS * 5
    assert losses['loss_cross'].item() == pytest.approx(0.5 * sum(rows) / len(rows), rel=1e-4)


def test_dual_encoder_predicts_like_a_classifier():
    """Each image's scores are the softmax over the class prompts of e^t·cos(image, prompt)
    (recomputed from the towers' features), its label their argmax; the prompts' tokens are
    written out by hand."""
    model = tiny_dual_encoder(cross=True).eval()
    # words in sorted order from id 3: a 3, digit 4, of 5, one 6, photo 7, the 8, zero 9;
    # SOT 1, EOT 2, padding 0, to the longest prompt's 6 words + 2
    assert model.prompt_tokens.tolist() == [[1, 3, 7, 5, 8, 4, 9, 2], [1, 3, 7, 5, 8, 4, 6, 2],
                                            [1, 3, 6, 2, 0, 0, 0, 0]]
    inputs, samples = digit_batch()
    with torch.no_grad():
        out = model.predict(inputs, samples)
        logits = hand_logits(model, inputs, model.prompt_tokens)
    scores = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    torch.testing.assert_close(torch.stack([s.pred_score for s in out]), scores)
    assert [int(s.pred_label) for s in out] == scores.argmax(dim=1).tolist()
    assert [int(s.gt_label) for s in out] == [0, 1, 2, 0]  # the samples passed in are filled


# ---------------------------------------------------------------------------------- configs
@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('digits'))
    write_digits(root, limit=100)
    return root


def short_run(config: str, work_dir: str, digits_root: str, **options) -> Runner:
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': digits_root,
        'val_dataloader.dataset.data_root': digits_root,
        'test_dataloader.dataset.data_root': digits_root,
        'train_dataloader.batch_size': 8,
        'train_cfg.max_epochs': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
        **options})
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_deit_configs_switch_merging_on_in_the_mmpretrain_recipe():
    from mmpretrain.models.backbones import DistilledVisionTransformer
    for config, matcher in (('crossget_deit-small_4xb256_in1k.py', 'crossget'),
                            ('tome_deit-small_4xb256_in1k.py', 'tome'),
                            ('crossget_deit-small-distilled_4xb256_in1k.py', 'crossget')):
        cfg = Config.fromfile(osp.join(CONFIGS, config))
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            model = MODELS.build(cfg.model)
        state = model.backbone.token_merging
        assert (state.r, state.matcher_name) == ([13] * 12, matcher)
        distilled = isinstance(model.backbone, DistilledVisionTransformer)
        assert state.num_leading == (2 if distilled else 1)
        assert type(model).__name__ == 'ImageClassifier'
        assert state.metric == ('full' if matcher == 'crossget' else 'head_mean')


@pytest.mark.parametrize('config,matcher,metric', [
    ('crossget_vit-p4_digits.py', 'crossget', 'full'),
    ('crossget-head-mean_vit-p4_digits.py', 'crossget', 'head_mean'),
    ('tome_vit-p4_digits.py', 'tome', 'head_mean')])
def test_digits_configs_name_the_metric(config, matcher, metric):
    """Each matcher compares its authors' metric unless the config names the other."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    state = model.backbone.token_merging
    assert (state.matcher_name, state.metric, state.r) == (matcher, metric, [4] * 6)


def test_distilling_a_token_merging_student_trains(digits_root, tmp_path):
    teacher = write_teacher_checkpoint(osp.join(CONFIGS, 'vit-p4_digits.py'), {},
                                       str(tmp_path / 'teacher.pth'))
    runner = short_run('kd_crossget_vit-p4_from_vit-p4_digits.py', str(tmp_path / 'kd'),
                       digits_root, **{'model.teacher.checkpoint': teacher,
                                       'train_cfg.val_interval': 1})
    student = runner.model.student
    assert student.backbone.token_merging.r == [4] * 6
    # the student merged tokens in its last pass: 65 -> 41
    assert student.backbone.token_merging.sizes.shape[1] == 41
    logged = runner.message_hub.log_scalars
    assert 'train/loss_kd' in logged  # the student's own loss and KD were both logged
    assert math.isfinite(logged['train/loss_kd'].current())
    assert logged['train/loss'].current() > logged['train/loss_kd'].current()
    # the teacher did not move; the student did
    saved = torch.load(teacher, weights_only=False)['state_dict']
    for name, value in runner.model.teacher.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert 'val/accuracy/top1' in logged  # validation ran the merging student alone


def test_crossget_dual_encoder_config_trains_and_evaluates(digits_root, tmp_path):
    runner = short_run('crossget_clip_vit-p4_digits.py', str(tmp_path / 'clip'), digits_root,
                       **{'train_cfg.val_interval': 1})
    model = runner.model.eval()
    # 50 training images in batches of 8: 7 steps, each logging both terms, and the logged
    # total is their sum
    assert runner.iter == 7 and len(logged_history(runner, 'train/loss_cross')) == 7
    terms = logged_loss_terms(runner)
    assert set(terms) == {'loss_itc', 'loss_cross'}
    assert all(math.isfinite(value) and value > 0 for value in terms.values())
    # the cross tokens of both towers, zeros at the start, were trained
    assert all(layer.cross_token.abs().sum() > 0 for layer in model.vision.layers)
    assert bool((model.text.cross_tokens.abs().sum(dim=1) > 0).all())
    # validation merged tokens: 64 patches + class + cross token, r = 4 in 6 layers: 66 -> 42
    sizes = model.vision.token_merging.sizes
    assert sizes.shape[1] == 42
    assert torch.equal(sizes.sum(dim=1).flatten(), torch.full((len(sizes), ), 66.))
    # the logged accuracy: the share of the 50 validation images whose best-scoring prompt is
    # their class's, recounted here from the logits
    correct = total = 0
    with torch.no_grad():
        for batch in runner.val_dataloader:
            data = model.data_preprocessor(batch, False)
            logits = model(data['inputs'], mode='tensor')
            labels = torch.cat([sample.gt_label for sample in data['data_samples']])
            correct += int((logits.argmax(dim=1) == labels).sum())
            total += len(labels)
    assert total == 50
    assert runner.message_hub.get_scalar('val/accuracy/top1').current() == \
        pytest.approx(100 * correct / total)


# ------------------------------------------------------------------- merging-step benchmark
def test_step_benchmark_pairs_rounds_and_predicts_the_full_width_extra_from_flops():
    """Synthetic CPU times of two rounds: ratios per round against the baseline (median, min,
    max), against this project's ToMe, and the full-width metric's time beyond the baseline
    against the extra similarity FLOPs' share of the full-width matmul's time."""
    from projects.crossget import benchmark
    size = dict(batch=8, tokens=197, width=384, heads=6)
    bipartite = 8 * 99 * 98 * 64  # A: 99 even positions (class token first), B: 98; 384 / 6
    full = 8 * 197 * 196 * 384  # 196 mergeable tokens plus the guide's row, full width
    assert benchmark.similarity_flops(metric='bipartite', **size) == bipartite
    assert benchmark.similarity_flops(metric='full', **size) == full
    assert benchmark.similarity_flops(metric='head_mean', **size) == full // 6
    seconds = {'official ToMe': [2., 4.], 'ToMe': [1., 2.],
               'CrossGET, head-mean metric': [3., 4.], 'CrossGET, full-width metric': [4., 8.],
               'full-width similarity matmul': [1., 2.]}
    rows = benchmark.step_rows(seconds, size, 'official ToMe')
    assert set(rows) == set(seconds) - {'full-width similarity matmul'}
    head = rows['CrossGET, head-mean metric']
    assert (head['ratio'], head['ratio_min'], head['ratio_max']) == (1.25, 1., 1.5)
    assert head['over_tome'] == 2.5 and 'extra_us' not in head
    share = 1 - bipartite / full
    wide = rows['CrossGET, full-width metric']
    assert wide['ratio'] == 2. and wide['extra_us'] == pytest.approx(3e6)
    assert wide['predicted_us'] == pytest.approx(1.5e6 * share)
    assert wide['extra_over_predicted'] == pytest.approx(2 / share)


def test_step_benchmark_times_the_project_steps_it_names():
    """The timed steps of the project's variants merge r tokens with their matcher and
    metric (a small size, no official ToMe)."""
    from projects.crossget import benchmark
    functions = benchmark.step_functions(batch=2, tokens=17, width=12, heads=3, r=4)
    assert set(functions) == {*benchmark.STEP_VARIANTS, 'full-width similarity matmul'}
    for name in benchmark.STEP_VARIANTS:
        assert functions[name]().shape == (2, 13, 12)
    assert functions['full-width similarity matmul']().shape == (2, 17, 16)
    seconds = benchmark.cpu_times(functions, rounds=3, warmup=2)
    assert {name: len(times) for name, times in seconds.items()} == dict.fromkeys(functions, 3)
