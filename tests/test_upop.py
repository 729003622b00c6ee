"""UPop (projects/upop): masks, the unified search, exact compression, export, cost counts."""
import copy
import logging
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope

from benchmarks.digits.run import write_digits
from helpers.runner import logged_history

from mmdistill.apis.complexity import count_flops
from projects.upop.upop import (AttentionHeadDims, MagnitudePruningToWidthsHook,
                                ProgressiveMagnitudePruningHook, UniformMagnitudePruningHook,
                                UPopHook, find_structures, progressive_share,
                                pruned_model_config, select_units)

EMBED, HEADS, HEAD_DIMS, HIDDEN, LAYERS, CLASSES = 16, 2, 8, 32, 2, 5
IMAGE, PATCH = 16, 4
TOKENS = (IMAGE // PATCH)**2 + 1
UPOP_CONFIGS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'projects', 'upop',
                        'configs')


def tiny_deit(**backbone) -> dict:
    return dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', img_size=IMAGE, patch_size=PATCH,
                      arch=dict(embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS,
                                feedforward_channels=HIDDEN), **backbone),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=CLASSES, in_channels=EMBED))


def build(cfg: dict):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # random biases too: a lost qkv bias must show
        for param in model.parameters():
            param.normal_(0, 0.3)
    return model.eval()


@pytest.fixture
def model():
    return build(tiny_deit())


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, IMAGE, IMAGE)


def masked_structures(model):
    structures = find_structures(model.backbone, 'backbone')
    for structure in structures:
        structure.attach_mask()
    return structures


def random_keeps(structures, seed=0):
    generator = torch.Generator().manual_seed(seed)
    keeps = []
    for structure in structures:
        n = structure.num_units
        keep = torch.randperm(n, generator=generator)[:int(torch.randint(1, n, (1, ),
                                                                         generator=generator))]
        keeps.append(torch.sort(keep).values)
    return keeps


# ------------------------------------------------------------------------------ masks
def test_structures_found_in_module_order(model):
    structures = find_structures(model.backbone, 'backbone')
    assert [(s.kind, s.path) for s in structures] == [
        ('attn', 'backbone.layers.0.attn'), ('mlp', 'backbone.layers.0.ffn'),
        ('attn', 'backbone.layers.1.attn'), ('mlp', 'backbone.layers.1.ffn')]
    # one head-dim slice: 3·H rows of qkv (with bias) + H columns of proj; an MLP unit:
    # a row of fc1 (with bias) + a column of fc2 (the reference's 9234 and 769 for DeiT-S).
    assert structures[0].unit_cost == 3 * HEADS * (EMBED + 1) + HEADS * EMBED
    assert structures[1].unit_cost == 2 * EMBED + 1


def test_all_ones_masks_change_nothing(model, images):
    before = model(images)
    structures = masked_structures(model)
    after = model(images)
    assert torch.equal(before, after)
    # the masks receive gradients (and nothing else is added to the model's parameters)
    after.sum().backward()
    assert all(s.mask.grad is not None and s.mask.grad.abs().sum() > 0 for s in structures)
    assert not any('upop' in name for name, _ in model.named_parameters())


def test_attention_mask_zeroes_that_channel_of_q_k_v(model, images):
    """A zero mask entry equals zeroing that channel of q, k, v in every head by hand."""
    structures = masked_structures(model)
    attn_mask = structures[0].mask
    with torch.no_grad():
        attn_mask[3] = 0
    masked = model(images)
    for structure in structures:
        structure.detach_mask()
    attn = model.backbone.layers[0].attn
    rows = [part * HEADS * HEAD_DIMS + head * HEAD_DIMS + 3 for part in range(3)
            for head in range(HEADS)]
    with torch.no_grad():
        attn.qkv.weight[rows] = 0
        attn.qkv.bias[rows] = 0
    torch.testing.assert_close(model(images), masked, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- compression
def test_masked_equals_compressed(model, images):
    structures = masked_structures(model)
    keeps = random_keeps(structures)
    with torch.no_grad():
        for structure, keep in zip(structures, keeps):
            structure.mask.zero_()
            structure.mask[keep] = 1
    masked = model(images)
    for structure, keep in zip(structures, keeps):
        structure.detach_mask()
        structure.prune(keep)
    compressed = model(images)
    torch.testing.assert_close(compressed, masked, rtol=0, atol=1e-5)
    attn = model.backbone.layers[0].attn
    width = len(keeps[0])
    assert attn.qkv.weight.shape == (3 * HEADS * width, EMBED)
    assert attn.qkv.bias.shape == (3 * HEADS * width, )  # the reference loses the bias here
    assert attn.proj.weight.shape == (EMBED, HEADS * width)
    assert model.backbone.layers[0].ffn.layers[0][0].weight.shape == (len(keeps[1]), EMBED)
    # The original scale head_dim₀^-1/2 is what makes them equal: PyTorch's default scale for
    # the narrower heads does not.
    attn.scaled_dot_product_attention = F.scaled_dot_product_attention
    assert not torch.allclose(model(images), masked, atol=1e-3)


def test_compressed_parameters_and_flops_match_hand_count(model, images):
    structures = find_structures(model.backbone, 'backbone')
    keeps = random_keeps(structures, seed=3)
    for structure, keep in zip(structures, keeps):
        structure.prune(keep)
    head_dims = [len(k) for k in keeps[0::2]]
    hidden = [len(k) for k in keeps[1::2]]
    d, n = EMBED, TOKENS
    params = (3 * PATCH * PATCH * d + d) + d + n * d  # patch embedding, cls token, positions
    macs = (n - 1) * d * 3 * PATCH * PATCH
    for width, units in zip(head_dims, hidden):
        inner = HEADS * width
        params += 2 * 2 * d  # two LayerNorms
        params += (d + 1) * 3 * inner + (inner + 1) * d  # qkv, proj
        params += (d + 1) * units + (units + 1) * d  # fc1, fc2
        macs += 2 * 5 * n * d  # MMEngine counts a LayerNorm as 5 per element
        macs += n * d * 3 * inner + n * inner * d  # qkv, proj
        macs += HEADS * n * n * width * 2  # q·kᵀ and attention·v
        macs += n * d * units + n * units * d  # fc1, fc2
    params += 2 * d + d * CLASSES + CLASSES  # final LayerNorm, head
    macs += 5 * n * d + d * CLASSES
    assert sum(p.numel() for p in model.parameters()) == params
    assert count_flops(model, images[:1]) == macs


# ------------------------------------------------------------------------------ search
def test_schedule_rises_to_exactly_the_budget():
    total, budget = 7, 0.4
    shares = [progressive_share(t, total, budget) for t in range(total)]
    assert shares[-1] == budget
    assert shares[0] == pytest.approx(budget * math.sin(math.pi / (2 * total)))
    assert all(a < b for a, b in zip(shares, shares[1:]))
    with pytest.raises(ValueError, match='outside the search'):
        progressive_share(total, total, budget)


def test_selection_standardises_per_kind_and_ranks_jointly():
    # attention scores are tiny in absolute terms and MLP ones large: only standardisation
    # per kind lets the top attention unit (index 2) compete with the MLP units.
    attn, mlp = torch.tensor([1e-6, 2e-6, 9e-6, 3e-6]), torch.tensor([100., 300., 200., 400.])
    # costs: attention unit 3, MLP unit 1; total 16. Standardised ranking:
    # attn2 (1.46), mlp3 (1.16), mlp1 (0.39), attn3 ...; cumulative costs 3, 4, 5, ...
    # share 4/16: the cost 4 is reached at mlp3. The reference's rule makes mlp3 the threshold
    # and keeps it (only attn2 selected); the 'nearest' rule takes the prefix up to it.
    chosen = select_units([attn, mlp], ['attn', 'mlp'], [3, 1], share=4 / 16)
    assert chosen[0].tolist() == [False, False, True, False]
    assert chosen[1].tolist() == [False, False, False, False]
    chosen = select_units([attn, mlp], ['attn', 'mlp'], [3, 1], share=4 / 16,
                          boundary='nearest')
    assert chosen[0].tolist() == [False, False, True, False]
    assert chosen[1].tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="boundary must be one of .* got 'above'"):
        select_units([attn, mlp], ['attn', 'mlp'], [3, 1], share=0.1, boundary='above')


@pytest.mark.parametrize('boundary', ['reference', 'nearest'])
def test_every_structure_keeps_its_lowest_scored_unit(boundary):
    """Share 1: every unit would go, but each structure keeps its lowest-scored one (the
    second, the third and the first of three structures of one kind)."""
    scores = [torch.tensor([5., 0.5, 4.]), torch.tensor([3., 6., 1.]),
              torch.tensor([0.1, 7., 2.])]
    chosen = select_units(scores, ['mlp'] * 3, [1, 1, 1], share=1.0, boundary=boundary)
    assert [c.tolist() for c in chosen] == [[True, False, True], [True, True, False],
                                            [False, True, True]]


def test_two_scores_standardise_to_plus_and_minus_one_over_root_two():
    from projects.upop.upop.search import standardise
    torch.testing.assert_close(standardise(torch.tensor([1., 3.])),
                               torch.tensor([-0.5**0.5, 0.5**0.5]))
    assert standardise(torch.tensor([2.])).tolist() == [0.]  # one value ranks nothing


@pytest.mark.parametrize('rule,interval,expected', [
    ('reference', 3, [3, 6, 9]), ('reference', 1, list(range(1, 10))),
    ('one_earlier', 3, [2, 5, 8, 9]), ('one_earlier', 1, list(range(10)))])
def test_masks_update_after_the_steps_each_rule_names(rule, interval, expected):
    """Ten search steps (0-based): the reference updates after steps interval, 2·interval, …
    (never after step 0), the earlier rule after interval−1, 2·interval−1, …; both after the
    last step, where the model is compressed."""
    hook = UPopHook(budget=0.5, search_iters=10, interval=interval, update_steps=rule)
    assert [step for step in range(10) if hook.is_update_step(step)] == expected


@pytest.mark.parametrize('batch_first', [False, True])
@pytest.mark.parametrize('mask', ['none', 'bool', 'float'])
def test_head_prunable_attention_is_torchs_self_attention(batch_first, mask):
    """The attention UPop puts in place of torch's (CLIP's text tower) gives torch's outputs
    and head-averaged weights, batch first or not, with a boolean or an additive mask."""
    from mmdistill.pruning import HeadPrunableSelfAttention
    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first)
    x = torch.randn(3, 5, 8)
    n = x.shape[1] if batch_first else x.shape[0]
    attn_mask = {'none': None, 'bool': torch.ones(n, n, dtype=torch.bool).triu(1),
                 'float': torch.randn(n, n)}[mask]
    expected, expected_weights = attn(x, x, x, attn_mask=attn_mask)
    prunable = HeadPrunableSelfAttention(attn)
    out, weights = prunable(x, x, x, attn_mask=attn_mask)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)
    assert prunable(x, x, x, need_weights=False)[1] is None
    with pytest.raises(ValueError, match='self-attention only'):
        prunable(x, x.clone(), x)


def test_sparsity_weights_cannot_change_the_selection():
    """While the masks are positive, w·sign(α) adds the same w to every unit of a kind, and
    standardisation per kind removes it: any weights give the same selection."""
    generator = torch.Generator().manual_seed(0)
    scores = [torch.randn(8, generator=generator), torch.randn(32, generator=generator),
              torch.randn(8, generator=generator), torch.randn(32, generator=generator)]
    kinds, costs = ['attn', 'mlp', 'attn', 'mlp'], [9234, 769, 9234, 769]
    plain = select_units(scores, kinds, costs, share=0.3)
    for weights in (dict(attn=4.8e-3, mlp=2e-4), dict(attn=10., mlp=0.), dict(attn=0., mlp=3.)):
        shifted = [s + 50 * weights[k] for s, k in zip(scores, kinds)]  # 50 steps of w·sign(1)
        for a, b in zip(select_units(shifted, kinds, costs, share=0.3), plain):
            assert torch.equal(a, b)
    assert any(c.any() for c in plain)


def test_unit_costs_per_kind_replace_the_parameter_counts(model):
    """unit_costs=dict(attn=36, mlp=1) (the reference's CLIP script) ranks with those weights;
    the default weighs each unit by its parameters (DeiT-S: 9234 and 769, the reference's)."""
    hook = UPopHook(budget=0.5, search_iters=4, interval=1, scope='backbone',
                    unit_costs=dict(attn=36, mlp=1))
    hook.structures = masked_structures(model)
    assert [hook.cost_of(s) for s in hook.structures] == [36, 1] * LAYERS
    for structure in hook.structures:
        structure.score.copy_(torch.arange(structure.num_units, dtype=torch.float))
    share = hook.update_masks(3)
    total = LAYERS * (36 * HEAD_DIMS + HIDDEN)
    pruned = sum(int((s.mask == 0).sum()) * hook.cost_of(s) for s in hook.structures)
    assert share == pruned / total and abs(pruned - total / 2) <= 36
    default = UPopHook(budget=0.5, search_iters=4, scope='backbone')
    default.structures = hook.structures
    assert [default.cost_of(s) for s in hook.structures] == \
        [s.unit_cost for s in hook.structures]
    for bad in (dict(attn=36), dict(attn=36, mlp=0), dict(attn=1, mlp=1, cross=2)):
        with pytest.raises(ValueError, match='unit_costs gives a positive cost'):
            UPopHook(budget=0.5, search_iters=4, unit_costs=bad)


@pytest.mark.parametrize('boundary', ['reference', 'nearest'])
def test_final_selection_prunes_the_budget(model, boundary):
    """At t = T−1 the masks of the selected units are 0 and the pruned share is the budget's
    (to the boundary rule's unit)."""
    hook = UPopHook(budget=0.5, search_iters=4, interval=1, scope='backbone', boundary=boundary)
    hook.structures = masked_structures(model)
    costs = [s.num_units * s.unit_cost for s in hook.structures]
    # scores 0..n−1 in every structure: after standardisation per kind, exactly the upper half
    # of each structure's units are positive, and they make up half of the cost.
    for structure in hook.structures:
        structure.score.copy_(torch.arange(structure.num_units, dtype=torch.float))
    for step in range(4):
        share = hook.update_masks(step)
        value = torch.tensor(1 - progressive_share(step, 4, 0.5) / 0.5).item()  # in float32
        for structure in hook.structures:
            assert set(structure.mask.unique().tolist()) == {1.0, value}
    pruned = [int((s.mask == 0).sum()) for s in hook.structures]
    if boundary == 'nearest':  # the prefix whose cost is nearest: exactly half
        assert pruned == [s.num_units // 2 for s in hook.structures] and share == 0.5
    else:  # the threshold is MLP unit 16 (tied in both layers) and is kept, in both layers
        assert pruned == [HEAD_DIMS // 2, HIDDEN // 2 - 1] * LAYERS
        assert share == sum(n * s.unit_cost for n, s in zip(pruned, hook.structures)) / \
            sum(costs) < 0.5


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize('budget', [0, 1, -0.2, 1.5])
def test_budget_outside_zero_one(budget):
    with pytest.raises(ValueError, match=r'budget must be in \(0, 1\)'):
        UPopHook(budget=budget, search_iters=10)
    with pytest.raises(ValueError, match=r'budget must be in \(0, 1\)'):
        UniformMagnitudePruningHook(budget=budget)


def test_budget_that_removes_a_whole_layer(model):
    class FakeRunner:
        pass
    runner = FakeRunner()
    runner.model = model
    with pytest.raises(ValueError, match='would remove whole attention or MLP layers'):
        UPopHook(budget=0.99, search_iters=10).before_run(runner)

    # The ranking wants all of layer 0's attention first: its lowest-ranked unit stays.
    hook = UPopHook(budget=0.6, search_iters=2, interval=1, scope='backbone')
    hook.structures = masked_structures(build(tiny_deit()))
    hook.structures[0].score.copy_(100. + torch.arange(HEAD_DIMS))
    hook.update_masks(1)
    assert hook.structures[0].mask.tolist() == [1.0] + [0.0] * (HEAD_DIMS - 1)


def test_model_without_attention_or_mlp():
    resnet = build(dict(type='ImageClassifier',
                        backbone=dict(type='ResNet_CIFAR', depth=18, base_channels=4,
                                      stem_channels=4),
                        neck=dict(type='GlobalAveragePooling'),
                        head=dict(type='LinearClsHead', num_classes=3, in_channels=32)))
    with pytest.raises(ValueError, match="no attention or MLP to prune.*MultiheadAttention"):
        find_structures(resnet)


def test_ema_hook_and_other_wrappers_are_refused_at_start(model):
    """EMAHook (its averaged copy would keep the dense shapes) and a wrapper other than DDP
    (which the hook could not rebuild) stop the run before any step, naming the fix."""
    from mmengine.hooks import EMAHook
    from mmengine.model import MMSeparateDistributedDataParallel

    class FakeRunner:
        pass
    runner = FakeRunner()
    runner.model, runner.hooks = model, [EMAHook()]
    for hook in (UPopHook(budget=0.3, search_iters=10, scope='backbone'),
                 UniformMagnitudePruningHook(budget=0.3, scope='backbone')):
        with pytest.raises(ValueError, match=f'{type(hook).__name__} cannot run beside '
                                             'EMAHook.*Remove the EMA hook'):
            hook.before_run(runner)
    runner.hooks = []
    runner.model = MMSeparateDistributedDataParallel.__new__(MMSeparateDistributedDataParallel)
    with pytest.raises(ValueError, match='model wrapper MMSeparateDistributedDataParallel is '
                                         'not supported.*Remove model_wrapper_cfg'):
        UPopHook(budget=0.3, search_iters=10).before_run(runner)


def test_one_unit_wide_layers_are_named_in_a_warning(model, monkeypatch):
    import projects.upop.upop.hooks as hooks
    logged = []
    monkeypatch.setattr(hooks, 'print_log', lambda msg, **kw: logged.append((msg, kw)))

    class FakeRunner:
        pass
    hook = UniformMagnitudePruningHook(budget=0.3, scope='backbone')
    hook.structures = find_structures(model.backbone, 'backbone')
    keeps = [torch.arange(1), torch.arange(HIDDEN), torch.arange(4), torch.arange(1)]
    hook._compress(keeps, FakeRunner())
    warnings = [msg for msg, kw in logged if kw.get('level') == logging.WARNING]
    assert len(warnings) == 1
    assert "['backbone.layers.0.attn', 'backbone.layers.1.ffn']" in warnings[0]
    logged.clear()
    hook = UniformMagnitudePruningHook(budget=0.3, scope='backbone')
    hook.structures = find_structures(build(tiny_deit()).backbone, 'backbone')
    hook._compress([torch.arange(2), torch.arange(HIDDEN), torch.arange(4), torch.arange(2)],
                   FakeRunner())
    assert not [msg for msg, kw in logged if kw.get('level') == logging.WARNING]


def test_attention_with_v_shortcut_is_refused():
    from mmpretrain.models.utils.attention import MultiheadAttention
    with pytest.raises(ValueError, match='v_shortcut'):
        AttentionHeadDims('attn', MultiheadAttention(16, 2, input_dims=8, v_shortcut=True))


# ------------------------------------------------------------------------------ export
def test_pruned_config_expresses_widths(model, images, tmp_path):
    """MLP widths in mmpretrain's layer_cfgs, head dims via mmdistill.UPopPrunedBackbone:
    a model built from the written config with the compressed weights gives the same output."""
    from mmpretrain import get_model
    structures = find_structures(model.backbone, 'backbone')
    keeps = random_keeps(structures, seed=5)
    for structure, keep in zip(structures, keeps):
        structure.prune(keep)
    head_dims = [len(k) for k in keeps[0::2]]
    hidden = [len(k) for k in keeps[1::2]]
    cfg = pruned_model_config(tiny_deit(), head_dims, hidden)
    assert cfg['backbone']['type'] == 'mmdistill.UPopPrunedBackbone'
    assert [c['feedforward_channels'] for c in cfg['backbone']['backbone']['layer_cfgs']] == \
        hidden
    path = osp.join(tmp_path, 'pruned.py')
    Config(dict(model=cfg, default_scope='mmpretrain',
                custom_imports=dict(imports=['projects.upop.upop']))).dump(path)
    checkpoint = osp.join(tmp_path, 'pruned.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    loaded = get_model(path, pretrained=checkpoint)
    torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=1e-6)
    # only MLPs narrowed: a plain mmpretrain config
    assert pruned_model_config(tiny_deit(), [HEAD_DIMS] * LAYERS, hidden,
                               attention_narrowed=False)['backbone']['type'] == \
        'VisionTransformer'


def test_pruned_backbone_refuses_widths_it_cannot_build():
    from mmdistill.pruning import UPopPrunedBackbone
    backbone = tiny_deit()['backbone']
    too_wide = [HEAD_DIMS] * (LAYERS - 1) + [HEAD_DIMS + 1]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match='head_dims has 1 entries; the backbone has '
                           f'{LAYERS} attention layers'):
            UPopPrunedBackbone(backbone, [HEAD_DIMS])
        with pytest.raises(ValueError, match=f'UPopPrunedBackbone head_dims: layers.'
                           f'{LAYERS - 1}.attn has {HEAD_DIMS} units; width {HEAD_DIMS + 1} '
                           f'is not in 1..{HEAD_DIMS}'):
            UPopPrunedBackbone(backbone, too_wide)


def test_pruned_config_drops_pretrained_weights_and_leaves_the_dense_config_alone():
    """The exported checkpoint initialises the pruned model: a ``Pretrained`` init_cfg of the
    backbone or of the model (which would load dense weights over it) is dropped, any other
    init_cfg kept; per-layer settings survive with the new MLP widths; the dense config the
    caller passed is not changed."""
    dense = tiny_deit(init_cfg=dict(type='Pretrained', checkpoint='dense.pth'),
                      layer_cfgs=dict(drop_path_rate=0.1))
    dense['init_cfg'] = dict(type='Pretrained', checkpoint='dense.pth')
    before = copy.deepcopy(dense)
    cfg = pruned_model_config(dense, [HEAD_DIMS] * LAYERS, [7, 9])
    assert 'init_cfg' not in cfg and 'init_cfg' not in cfg['backbone']['backbone']
    assert cfg['backbone']['backbone']['layer_cfgs'] == [
        dict(drop_path_rate=0.1, feedforward_channels=7),
        dict(drop_path_rate=0.1, feedforward_channels=9)]
    assert dense == before
    dense['init_cfg'] = dense['backbone']['init_cfg'] = dict(type='TruncNormal', std=.02)
    cfg = pruned_model_config(dense, [HEAD_DIMS] * LAYERS, [7, 9])
    assert cfg['init_cfg'] == cfg['backbone']['backbone']['init_cfg'] == dict(
        type='TruncNormal', std=.02)


def test_magnitude_keeps_the_largest_units(model):
    hook = UniformMagnitudePruningHook(budget=0.5, scope='backbone')
    hook.structures = find_structures(model.backbone, 'backbone')
    ffn = model.backbone.layers[0].ffn
    fc1, fc2 = ffn.layers[0][0], ffn.layers[1]
    norms = fc1.weight.abs().sum(1) + fc1.bias.abs() + fc2.weight.abs().sum(0)
    expected = torch.sort(torch.topk(norms, HIDDEN // 2).indices).values
    kept_rows = fc1.weight[expected].clone()

    class FakeRunner:
        pass
    hook.before_train(FakeRunner())
    assert torch.equal(fc1.weight, kept_rows)
    assert hook.describe_widths() == (f'attn head dims {[HEAD_DIMS // 2] * LAYERS}; '
                                      f'mlp hidden units {[HIDDEN // 2] * LAYERS}')


def test_magnitude_ranks_attention_head_dims_over_all_their_rows_and_columns(model):
    """Head dim j of an attention owns rows (part, head, j) of qkv (q, k, v of every head, with
    their biases) and columns (head, j) of proj. Known weights: every element of row
    (part, head, j) is ±a[part][head][j]/100 (its bias −a/100), every element of column
    (head, j) of proj g[head][j]/100. Only the sum over all of them ranks units 3, 4, 6, 7
    highest: no single part, head or matrix does, nor consecutive rows taken as one unit."""
    a = [[[6, 2, 5, 4, 8, 3, 9, 2], [6, 1, 7, 2, 7, 3, 3, 6]],  # q: head 0, head 1
         [[2, 7, 2, 9, 4, 2, 5, 6], [5, 9, 2, 8, 5, 2, 1, 5]],  # k
         [[1, 1, 2, 7, 2, 1, 4, 4], [7, 3, 2, 8, 3, 4, 3, 2]]]  # v
    g = [[7, 7, 9, 5, 9, 5, 8, 6], [2, 4, 6, 1, 1, 1, 5, 6]]  # proj: head 0, head 1
    attn = model.backbone.layers[0].attn
    qkv, proj = attn.qkv, attn.proj
    with torch.no_grad():
        for part in range(3):
            for head in range(HEADS):
                for j in range(HEAD_DIMS):
                    row = part * HEADS * HEAD_DIMS + head * HEAD_DIMS + j
                    signs = torch.tensor([(-1.)**(row + col) for col in range(EMBED)])
                    qkv.weight[row] = signs * a[part][head][j] / 100
                    qkv.bias[row] = -a[part][head][j] / 100
                    proj.weight[:, head * HEAD_DIMS + j] = g[head][j] / 100
    # the magnitudes by hand: 17·a (16 weights and a bias) per row, 16·g per column
    magnitude = [sum(17 * a[part][head][j] for part in range(3) for head in range(HEADS))
                 + sum(16 * g[head][j] for head in range(HEADS)) for j in range(HEAD_DIMS)]
    assert magnitude == [603, 567, 580, 742, 653, 351, 633, 617]
    keep = [3, 4, 6, 7]
    rows = [part * HEADS * HEAD_DIMS + head * HEAD_DIMS + j for part in range(3)
            for head in range(HEADS) for j in keep]
    columns = [head * HEAD_DIMS + j for head in range(HEADS) for j in keep]
    expected = qkv.weight[rows].clone(), qkv.bias[rows].clone(), proj.weight[:, columns].clone()

    class FakeRunner:
        pass
    hook = UniformMagnitudePruningHook(budget=0.5, scope='backbone')
    hook.structures = find_structures(model.backbone, 'backbone')
    hook.before_train(FakeRunner())
    assert attn.head_dims == HEAD_DIMS // 2
    assert torch.equal(qkv.weight, expected[0]) and torch.equal(qkv.bias, expected[1])
    assert torch.equal(proj.weight, expected[2])


def hand_magnitudes(model) -> list:
    """Each unit's L1 norm by hand, per structure in module order: a head dim j owns rows
    (part, head, j) of qkv with their biases and columns (head, j) of proj; an MLP unit its fc1
    row with its bias and its fc2 column."""
    magnitudes = []
    for layer in model.backbone.layers:
        qkv, proj = layer.attn.qkv, layer.attn.proj
        rows = (qkv.weight.abs().sum(1) + qkv.bias.abs()).reshape(3, HEADS, HEAD_DIMS)
        columns = proj.weight.abs().sum(0).reshape(HEADS, HEAD_DIMS)
        fc1, fc2 = layer.ffn.layers[0][0], layer.ffn.layers[1]
        magnitudes += [(rows.sum((0, 1)) + columns.sum(0)).detach(),
                       (fc1.weight.abs().sum(1) + fc1.bias.abs() + fc2.weight.abs().sum(0))
                       .detach()]
    return magnitudes


def smallest(values: torch.Tensor, count: int, among: torch.Tensor) -> set:
    """The ``count`` indices of smallest ``values`` among the indices ``among``."""
    return set(sorted(among.tolist(), key=lambda i: float(values[i]))[:count])


def test_progressive_magnitude_masks_the_smallest_units_on_upops_schedule(model):
    """p = 0.5, T = 10, interval 3: the masks change after steps 3, 6 and 9 (UPop's steps), each
    structure of n units then has round(π(t)·n) of them at 0, π(t) = 0.5·sin(π(t + 1)/20):
    π(3) = 0.5·sin(36°) = 0.2939 → 2 of 8 head dims, 9 of 32 MLP units; π(6) = 0.5·sin(63°)
    = 0.4455 → 4 and 14; π(9) = 0.5 → 4 and 16. The masked units are those of smallest L1
    norm among those not masked yet: a masked unit whose weights grow stays masked."""
    hook = ProgressiveMagnitudePruningHook(budget=0.5, search_iters=10, interval=3,
                                           scope='backbone')
    hook.structures = masked_structures(model)
    assert [t for t in range(10) if hook.is_update_step(t)] == [3, 6, 9]
    removed_by_hand = {3: (2, 9), 6: (4, 14), 9: (4, 16)}
    assert progressive_share(3, 10, 0.5) == pytest.approx(0.5 * math.sin(math.radians(36)))
    costs = [s.unit_cost for s in hook.structures]
    total = sum(s.num_units * c for s, c in zip(hook.structures, costs))
    masked = [set() for _ in hook.structures]
    for step, (attn, mlp) in removed_by_hand.items():
        if step == 6:  # the largest masked MLP unit of layer 0 becomes the largest of all
            unit = max(masked[1], key=lambda i: float(hand_magnitudes(model)[1][i]))
            with torch.no_grad():
                model.backbone.layers[0].ffn.layers[0][0].weight[unit] *= 100
        magnitudes = hand_magnitudes(model)
        expected = []
        for i, structure in enumerate(hook.structures):
            count = attn if structure.kind == 'attn' else mlp
            unmasked = torch.tensor(sorted(set(range(structure.num_units)) - masked[i]))
            expected.append(masked[i] | smallest(magnitudes[i], count - len(masked[i]),
                                                 unmasked))
        share = hook.update_masks(step)
        for structure, units in zip(hook.structures, expected):
            assert set(torch.nonzero(structure.mask == 0).flatten().tolist()) == units
            assert set(torch.unique(structure.mask).tolist()) <= {0.0, 1.0}
        assert share == pytest.approx(sum(len(u) * c for u, c in zip(expected, costs)) / total)
        masked = expected
    assert [s.num_units - len(m) for s, m in zip(hook.structures, masked)] == \
        [HEAD_DIMS // 2, HIDDEN // 2] * LAYERS  # uniform magnitude pruning's widths


def test_magnitude_to_widths_keeps_the_given_widths_and_the_largest_units(model, tmp_path):
    """The widths come from a pruned checkpoint (random widths, random units kept); in each
    structure the units kept are that many of largest L1 norm in the model being pruned, not
    the checkpoint's units."""
    pruned = build(tiny_deit())
    structures = find_structures(pruned.backbone, 'backbone')
    keeps = random_keeps(structures, seed=3)
    for structure, keep in zip(structures, keeps):
        structure.prune(keep)
    path = str(tmp_path / 'pruned.pth')
    torch.save(dict(state_dict=pruned.state_dict()), path)
    widths = [len(keep) for keep in keeps]
    magnitudes = hand_magnitudes(model)
    expected = [torch.sort(torch.topk(m, w).indices).values for m, w in zip(magnitudes, widths)]
    assert any(not torch.equal(e, k) for e, k in zip(expected, keeps))
    layer = model.backbone.layers[1]
    fc1 = layer.ffn.layers[0][0].weight[expected[3]].clone()
    rows = (torch.arange(3 * HEADS)[:, None] * HEAD_DIMS + expected[2]).flatten()
    qkv = layer.attn.qkv.weight[rows].clone()

    class FakeRunner:
        pass
    hook = MagnitudePruningToWidthsHook(widths_from=path, scope='backbone')
    hook.structures = find_structures(model.backbone, 'backbone')
    hook.before_train(FakeRunner())
    assert [s.num_units for s in hook.structures] == widths
    assert torch.equal(layer.ffn.layers[0][0].weight, fc1)
    assert torch.equal(layer.attn.qkv.weight, qkv)
    # a checkpoint without layer 1 is not one of this model
    torch.save(dict(state_dict={k: v for k, v in pruned.state_dict().items()
                                if 'layers.1.' not in k}), path)
    hook = MagnitudePruningToWidthsHook(widths_from=path, scope='backbone')
    hook.structures = find_structures(build(tiny_deit()).backbone, 'backbone')
    with pytest.raises(ValueError, match=r"not a pruned checkpoint of this model.*"
                                         r"'backbone.layers.1.attn', None"):
        hook.before_train(FakeRunner())
    # the widths' checkpoint is read weights-only, like every checkpoint mmdistill loads
    from mmdistill.engine import UnsafeCheckpointError

    class RunsCode:
        def __reduce__(self):
            return (print, ('code ran',))
    torch.save(dict(state_dict=pruned.state_dict(), extra=RunsCode()), path)
    with pytest.raises(UnsafeCheckpointError, match='widths_from'):
        hook.before_train(FakeRunner())


def test_search_epochs_become_that_many_epochs_of_steps(model):
    """search_epochs = 3 with 7 batches per epoch: T = 21 steps; a run of 20 steps cannot hold
    the search, one of 21 can."""
    class FakeRunner:
        pass
    runner = FakeRunner()
    runner.model, runner.train_dataloader = model, [None] * 7
    for max_iters in (21, 20):
        runner.max_iters = max_iters
        hook = UPopHook(budget=0.5, search_epochs=3, interval=4, scope='backbone')
        hook.before_run(runner)
        if max_iters == 20:
            with pytest.raises(ValueError, match=r'search \(21 iterations\) is longer than '
                                                 r'the run \(20\)'):
                hook.before_train(runner)
        else:
            hook.before_train(runner)
            assert hook.search_iters == 21

def test_deit_small_config_reproduces_the_reference_costs():
    """The ImageNet config: DeiT-S has 12 attention and 12 MLP structures; a head-dim slice
    costs 9234 parameters and an MLP unit 769, the reference's cost weights."""
    from mmengine.registry import HOOKS
    cfg = Config.fromfile(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'projects',
                                   'upop', 'configs', 'upop_deit-small_60s-300r_in1k-50.py'))
    hook = HOOKS.build(cfg.custom_hooks[0])
    assert (hook.budget, hook.search_epochs, hook.interval) == (0.5, 60, 800)
    assert cfg.train_cfg.max_epochs == 360
    with torch.device('meta'):
        model = build_meta(cfg.model)
    structures = find_structures(model.backbone, 'backbone')
    assert [s.kind for s in structures] == ['attn', 'mlp'] * 12
    assert {s.unit_cost for s in structures if s.kind == 'attn'} == {9234}
    assert {s.unit_cost for s in structures if s.kind == 'mlp'} == {769}


def build_meta(cfg):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def test_pruning_slices_the_optimizer_state_alike(model, images):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(images).sum().backward()
    optimizer.step()
    structure = find_structures(model.backbone, 'backbone')[0]  # layer 0's attention
    qkv = model.backbone.layers[0].attn.qkv
    dense_moment = optimizer.state[qkv.bias]['exp_avg'].clone()
    keep = torch.tensor([1, 4, 6])
    structure.prune(keep, optimizer)
    rows = [part * HEADS * HEAD_DIMS + head * HEAD_DIMS + k for part in range(3)
            for head in range(HEADS) for k in keep.tolist()]
    assert torch.equal(optimizer.state[qkv.bias]['exp_avg'], dense_moment[rows])
    assert optimizer.state[qkv.weight]['exp_avg_sq'].shape == qkv.weight.shape
    model(images).sum().backward()
    optimizer.step()  # the optimizer runs on with the same parameter objects


# ------------------------------------------------------------ both towers of a dual encoder
PROMPTS = ['a photo of one', 'a photo of two', 'the digit three', 'four']


def tiny_dual_encoder():
    """crossget's dual encoder: an mmpretrain ViT and mmpretrain's CLIP text transformer
    (torch ``nn.MultiheadAttention`` + a ``c_fc``/``c_proj`` MLP, 4× wide)."""
    from projects.crossget.crossget.dual_encoder import ImageTextDualEncoder
    model = ImageTextDualEncoder(
        vision=dict(type='VisionTransformer', img_size=IMAGE, patch_size=PATCH,
                    out_type='cls_token',
                    arch=dict(embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS,
                              feedforward_channels=HIDDEN)),
        text=dict(width=EMBED, layers=LAYERS, heads=HEADS), class_prompts=PROMPTS,
        embed_dims=8)
    torch.manual_seed(0)
    with torch.no_grad():  # random in_proj biases too (torch initialises them to 0)
        for param in model.parameters():
            param.normal_(0, 0.3)
    return model.eval()


def dual_outputs(model, images):
    """The text tower's features (before projection and normalisation) and the logits."""
    return model.text(model.prompt_tokens), model(images)


def test_both_towers_found_and_all_ones_masks_change_nothing(images):
    model = tiny_dual_encoder()
    keys = set(model.state_dict())
    before = dual_outputs(model, images)
    structures = find_structures(model)
    text = [(s.kind, s.path) for s in structures if s.path.startswith('text')]
    assert text == [('attn', 'text.transformer.resblocks.0.attn'),
                    ('mlp', 'text.transformer.resblocks.0.mlp'),
                    ('attn', 'text.transformer.resblocks.1.attn'),
                    ('mlp', 'text.transformer.resblocks.1.mlp')]
    assert len(structures) == 2 * LAYERS + len(text)  # the ViT's attn + FFN per layer too
    assert structures[-2].num_units == EMBED // HEADS and structures[-1].num_units == 4 * EMBED
    assert structures[-2].unit_cost == 3 * HEADS * (EMBED + 1) + HEADS * EMBED
    assert structures[-1].unit_cost == 2 * EMBED + 1
    assert set(model.state_dict()) == keys  # torch's attention was replaced, its keys kept
    for structure in structures:
        structure.attach_mask()
    after = dual_outputs(model, images)
    for b, a in zip(before, after):  # same function as torch's MultiheadAttention
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    after[1].sum().backward()
    assert all(s.mask.grad is not None and s.mask.grad.abs().sum() > 0 for s in structures)


def test_text_tower_masked_equals_compressed(images):
    model = tiny_dual_encoder()
    structures = find_structures(model.text, 'text')
    for structure in structures:
        structure.attach_mask()
    keeps = random_keeps(structures, seed=5)
    with torch.no_grad():
        for structure, keep in zip(structures, keeps):
            structure.mask.zero_()
            structure.mask[keep] = 1
    masked = dual_outputs(model, images)
    for structure, keep in zip(structures, keeps):
        structure.detach_mask()
        structure.prune(keep)
    compressed = dual_outputs(model, images)
    for c, m in zip(compressed, masked):
        torch.testing.assert_close(c, m, rtol=0, atol=1e-5)
    block = model.text.transformer.resblocks[0]
    width = len(keeps[0])
    assert block.attn.in_proj_weight.shape == (3 * HEADS * width, EMBED)
    assert block.attn.in_proj_bias.shape == (3 * HEADS * width, )
    assert block.attn.out_proj.weight.shape == (EMBED, HEADS * width)
    assert block.mlp.c_fc.weight.shape == (len(keeps[1]), EMBED)
    assert block.mlp.c_proj.weight.shape == (EMBED, len(keeps[1]))
    # only the original scale makes them equal; the narrower heads' own scale does not
    block.attn.scale = width**-0.5
    assert not torch.allclose(dual_outputs(model, images)[0], masked[0], atol=1e-3)


def test_search_ranks_units_of_both_towers_together():
    """One ranking over both towers: scores that put all text units above all vision units
    select only text units (and the reverse only vision ones); a per-tower selection would
    take from both alike."""
    class FakeRunner:
        pass
    runner = FakeRunner()
    runner.model = tiny_dual_encoder()
    hook = UPopHook(budget=0.3, search_iters=2, interval=1, scope=['vision', 'text'])
    hook.before_run(runner)
    towers = [s.path.split('.')[0] for s in hook.structures]
    assert set(towers) == {'vision', 'text'}
    total = sum(s.num_units * s.unit_cost for s in hook.structures)
    for favoured in ('text', 'vision'):
        for structure, tower in zip(hook.structures, towers):
            structure.attach_mask()
            offset = 1000. if tower == favoured else 0.
            structure.score.copy_(offset + torch.arange(structure.num_units))
        share = hook.update_masks(1)
        pruned = {tower: sum(int((s.mask == 0).sum()) * s.unit_cost
                             for s, t in zip(hook.structures, towers) if t == tower)
                  for tower in ('vision', 'text')}
        # (scores 0..n−1 in every layer tie across layers: the reference's boundary keeps all
        # units tied at the threshold, one in each layer of its kind)
        assert pruned[favoured] / total == pytest.approx(0.3, abs=0.04) == share
        assert pruned[{'text': 'vision', 'vision': 'text'}[favoured]] == 0
    # equal scores in both towers: the same step selects from both
    for structure in hook.structures:
        structure.score.copy_(torch.arange(structure.num_units, dtype=torch.float))
    hook.update_masks(1)
    assert all(any((s.mask == 0).any() for s, t in zip(hook.structures, towers) if t == tower)
               for tower in ('vision', 'text'))


def test_pruned_model_builds_the_dual_encoder_at_given_widths():
    """mmdistill.UPopPrunedModel (what an exported dual encoder's config names): the dense
    config plus widths by structure path; unknown paths and impossible widths are refused."""
    from mmdistill.pruning import UPopPrunedModel
    tiny_dual_encoder()  # registers mmdistill.ImageTextDualEncoder
    cfg = dict(type='mmdistill.ImageTextDualEncoder', _scope_='mmpretrain',
               vision=dict(type='VisionTransformer', img_size=IMAGE, patch_size=PATCH,
                           out_type='cls_token',
                           arch=dict(embed_dims=EMBED, num_layers=1, num_heads=HEADS,
                                     feedforward_channels=HIDDEN)),
               text=dict(width=EMBED, layers=1, heads=HEADS), class_prompts=PROMPTS)
    widths = {'vision.layers.0.attn': 3, 'text.transformer.resblocks.0.attn': 5,
              'text.transformer.resblocks.0.mlp': 7}
    model = UPopPrunedModel(cfg, widths)
    found = {s.path: s.num_units for s in find_structures(model)}
    assert found == {'vision.layers.0.attn': 3, 'vision.layers.0.ffn': HIDDEN,
                     'text.transformer.resblocks.0.attn': 5,
                     'text.transformer.resblocks.0.mlp': 7}
    assert model.text.transformer.resblocks[0].attn.in_proj_weight.shape == (3 * HEADS * 5,
                                                                              EMBED)
    with pytest.raises(KeyError, match="no prunable structure \\['text.layers.0.attn'\\]"):
        UPopPrunedModel(cfg, {'text.layers.0.attn': 3})
    with pytest.raises(ValueError, match='width 0 is not in 1..8'):
        UPopPrunedModel(cfg, {'vision.layers.0.attn': 0})


# ------------------------------------------------------------- the hook, step by step in a run
def hand_selection(scores: list, kinds: list, costs: list, share: float) -> list:
    """UPop's selection as the reference writes it: scores standardised per kind ((x − mean) /
    std over all units of that kind), all units ranked together, highest first; the rank
    whose cumulative cost (its own unit included) is nearest to ``share`` of the total cost
    gives the threshold; the units scored strictly above it are selected, except each
    structure's lowest-scored unit."""
    standardised = [None] * len(scores)
    for kind in set(kinds):
        members = [i for i, k in enumerate(kinds) if k == kind]
        values = torch.cat([scores[i] for i in members])
        mean, std = values.mean(), values.std()
        for i in members:
            standardised[i] = (scores[i] - mean) / std
    ranking = sorted(((float(z[u]), i) for i, z in enumerate(standardised)
                      for u in range(len(z))), key=lambda t: -t[0])
    target = share * sum(cost * len(s) for cost, s in zip(costs, scores))
    threshold, gap, cost = None, None, 0
    for z, i in ranking:
        cost += costs[i]
        if gap is None or abs(cost - target) < gap:
            threshold, gap = z, abs(cost - target)
    return [(z > threshold) & (z > z.min()) for z in standardised]


class StepRecorder(Hook):
    """After each training step, copies of what UPop's structures hold (masks, their
    gradients, accumulated scores) and of the layers' qkv and fc1 weights; registered to run
    before UPopHook's ``after_train_iter`` (priority HIGH) or after it (LOW)."""

    def __init__(self):
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        upop = next(h for h in runner.hooks if isinstance(h, UPopHook))
        layers = runner.model.backbone.layers
        record = dict(step=runner.iter, compressed=upop.compressed,
                      widths=[s.num_units for s in upop.structures],
                      qkv=[layer.attn.qkv.weight.detach().clone() for layer in layers],
                      fc1=[layer.ffn.layers[0][0].weight.detach().clone() for layer in layers])
        if not upop.compressed:
            record.update(
                masks=[s.mask.detach().clone() for s in upop.structures],
                grads=[None if s.mask.grad is None else s.mask.grad.clone()
                       for s in upop.structures],
                scores=[s.score.clone() for s in upop.structures])
        self.records.append(record)


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('digits'))
    write_digits(root, limit=40)  # 20 training images
    return root


def test_upop_hook_steps_through_a_real_run(digits_root, tmp_path):
    """The project's UPop config on a tiny DeiT, run by MMEngine's Runner: 20 images in batches
    of 5 are 4 steps an epoch; search_epochs = 2 makes T = 8 steps; interval = 3; 3 epochs.

    The reference's schedule (its ``step > 0 and step % interval == 0 or step == T − 1``):
    masks are updated after the 0-based steps interval, 2·interval, ... and after the last
    search step T − 1: here after steps 3, 6 and 7, and at no other step. At an update after
    step t the share is π(t) = p·sin(π(t + 1) / (2T)) with p = 0.5, T = 8
    (π(3) = 0.5·sin(4π/16) ≈ 0.354, π(6) = 0.5·sin(7π/16) ≈ 0.490, π(7) = 0.5 exactly); the
    units selected (:func:`hand_selection`, the reference's boundary) from the scores
    accumulated so far get mask 1 − π(t)/p, all others 1; after step 7 the selected units are
    removed. Each search step
    adds the mask gradient plus w·sign(mask) to the scores; the retraining steps change
    nothing."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(UPOP_CONFIGS, 'upop-deit-digits.py'))
    cfg.work_dir = str(tmp_path)
    cfg.merge_from_dict({
        'model.backbone.arch': dict(embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS,
                                    feedforward_channels=HIDDEN),
        'model.backbone.patch_size': 8,
        'model.head.in_channels': EMBED,
        'train_dataloader.dataset.data_root': digits_root,
        'val_dataloader.dataset.data_root': digits_root,
        'test_dataloader.dataset.data_root': digits_root,
        'train_dataloader.batch_size': 5,
        'train_cfg.max_epochs': 3,
        'train_cfg.val_interval': 10,
        'custom_hooks.0.search_epochs': 2,
        'custom_hooks.0.interval': 3,
        'load_from': None})
    runner = Runner.from_cfg(cfg)
    before, after = StepRecorder(), StepRecorder()
    runner.register_hook(before, 'HIGH')  # UPopHook is ABOVE_NORMAL
    runner.register_hook(after, 'LOW')
    runner.train()
    upop = next(h for h in runner.hooks if isinstance(h, UPopHook))
    assert upop.search_iters == 8
    assert [r['step'] for r in after.records] == list(range(12))
    kinds = [s.kind for s in upop.structures]
    costs = [s.unit_cost for s in upop.structures]
    weights = [upop.sparsity_weights[kind] for kind in kinds]
    dense = [HEAD_DIMS if kind == 'attn' else HIDDEN for kind in kinds]
    total = sum(n * c for n, c in zip(dense, costs))

    masks, shares = [torch.ones(n) for n in dense], []
    for t in range(8):
        pre, post = before.records[t], after.records[t]
        # this step's accumulation, from what the step left before UPop's hook ran
        scores = [s + g + w * torch.sign(m) for s, g, m, w in
                  zip(pre['scores'], pre['grads'], pre['masks'], weights)]
        assert all(torch.equal(m, old) for m, old in zip(pre['masks'], masks))
        if t in (3, 6, 7):
            share = 0.5 * math.sin(math.pi * (t + 1) / 16) if t < 7 else 0.5
            selected = hand_selection(scores, kinds, costs, share)
        if t in (3, 6):
            value = torch.tensor(1 - share / 0.5)
            masks = [torch.where(sel, value, torch.ones(())) for sel in selected]
            assert any(sel.any() for sel in selected) and 0 < value < 1
            shares.append(sum(int(sel.sum()) * c for sel, c in zip(selected, costs)) / total)
        if t < 7:
            assert not post['compressed']
            for mask, expected in zip(post['masks'], masks):
                torch.testing.assert_close(mask, expected, rtol=0, atol=0)
            for score, expected in zip(post['scores'], scores):
                torch.testing.assert_close(score, expected)
            assert all(grad is None for grad in post['grads'])  # taken into the scores
            continue
        # after the last search step: the selected units are gone, the others' weights kept
        shares.append(sum(int(sel.sum()) * c for sel, c in zip(selected, costs)) / total)
        assert post['compressed']
        assert post['widths'] == [n - int(sel.sum()) for n, sel in zip(dense, selected)]
        for layer in range(LAYERS):
            keep = torch.nonzero(~selected[2 * layer]).flatten()
            rows = (torch.arange(3 * HEADS)[:, None] * HEAD_DIMS + keep).flatten()
            assert torch.equal(post['qkv'][layer], pre['qkv'][layer][rows])
            keep = torch.nonzero(~selected[2 * layer + 1]).flatten()
            assert torch.equal(post['fc1'][layer], pre['fc1'][layer][keep])
    assert shares[-1] == pytest.approx(0.5, abs=max(costs) / total)
    assert logged_history(runner, 'train/upop_pruned_share') == pytest.approx(shares)
    # the retraining steps leave the widths alone
    assert all(r['compressed'] and r['widths'] == after.records[7]['widths']
               for r in after.records[8:])


def test_progressive_magnitude_config_prunes_on_upops_steps_in_a_real_run(digits_root, tmp_path):
    """``configs/progressive-magnitude-deit-digits.py`` on a tiny DeiT in MMEngine's Runner: T = 8
    steps, interval 3, p = 0.5; masks updated after steps 3, 6, 7 to round(π(t)·n) units masked
    per structure (π(3) = 0.5·sin(π/4): 3 of 8 head dims, 11 of 32 MLP units; π(6) =
    0.5·sin(7π/16): 4 and 16; π(7) = 0.5: 4 and 16), then compressed to uniform magnitude
    pruning's widths; the logged share is the masked share of the parameters."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(UPOP_CONFIGS, 'progressive-magnitude-deit-digits.py'))
    cfg.work_dir = str(tmp_path)
    cfg.merge_from_dict({
        'model.backbone.arch': dict(embed_dims=EMBED, num_layers=LAYERS, num_heads=HEADS,
                                    feedforward_channels=HIDDEN),
        'model.backbone.patch_size': 8, 'model.head.in_channels': EMBED,
        'train_dataloader.dataset.data_root': digits_root,
        'val_dataloader.dataset.data_root': digits_root,
        'test_dataloader.dataset.data_root': digits_root,
        'train_dataloader.batch_size': 5, 'train_cfg.max_epochs': 3,
        'train_cfg.val_interval': 10, 'custom_hooks.0.search_epochs': 2,
        'custom_hooks.0.interval': 3, 'load_from': None})
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, ProgressiveMagnitudePruningHook))
    assert hook.compressed and hook.search_iters == 8
    assert [s.num_units for s in hook.structures] == [HEAD_DIMS // 2, HIDDEN // 2] * LAYERS
    attn_cost, mlp_cost = 3 * HEADS * (EMBED + 1) + HEADS * EMBED, 2 * EMBED + 1
    total = LAYERS * (HEAD_DIMS * attn_cost + HIDDEN * mlp_cost)
    shares = [LAYERS * (attn * attn_cost + mlp * mlp_cost) / total
              for attn, mlp in ((3, 11), (4, 16), (4, 16))]
    assert logged_history(runner, 'train/upop_pruned_share') == pytest.approx(shares)
