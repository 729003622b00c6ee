"""The vectorised CrossGET matcher and merge against the code they replace (matching.py at
main's commit 34e5698, loaded from git): the same merged tokens and sizes on random inputs.
Kept for the commit that replaces the code; the invariant tests live in test_crossget.py."""
import os.path as osp
import subprocess
import types

import pytest
import torch

from projects.crossget.crossget.matching import complete_graph_soft_matching, merge_tokens

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def before() -> types.ModuleType:
    source = subprocess.run(
        ['git', 'show', '34e5698:projects/crossget/crossget/matching.py'], cwd=ROOT,
        check=True, capture_output=True, text=True).stdout
    module = types.ModuleType('matching_before')
    exec(compile(source, 'matching_before.py', 'exec'), module.__dict__)
    return module


@pytest.mark.parametrize('lead,trail', [(1, 0), (1, 1), (2, 0), (0, 1)])
@pytest.mark.parametrize('shape,r', [((4, 30, 16), 7), ((3, 65, 96), 8), ((2, 197, 64), 13)])
@pytest.mark.parametrize('duplicates', [False, True])
def test_vectorised_crossget_merges_the_same_tokens_as_before(lead, trail, shape, r, duplicates):
    """``duplicates``: the second half of the keys repeats the first (ties everywhere)."""
    old = before()
    torch.manual_seed(sum(shape) + r + 10 * lead + trail)
    x, keys = torch.randn(*shape), torch.randn(*shape)
    if duplicates:
        half = shape[1] // 2
        keys[:, half:2 * half] = keys[:, :half]
    guide = torch.randn(shape[0], shape[2])
    sizes = torch.randint(1, 5, (*shape[:2], 1)).float()
    new_plan = complete_graph_soft_matching(keys, r, lead, trail, guide)
    old_plan = old.complete_graph_soft_matching(
        keys[:, lead:shape[1] - trail], r, guide).within(lead, trail)
    assert torch.equal(new_plan.src, old_plan.src) and torch.equal(new_plan.dst, old_plan.dst)
    merged, new_sizes = merge_tokens(x, sizes, new_plan)
    merged_before, sizes_before = old.merge_tokens(x, sizes, old_plan)
    torch.testing.assert_close(merged, merged_before, rtol=1e-6, atol=1e-6)
    assert torch.equal(new_sizes, sizes_before)
