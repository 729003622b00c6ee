"""The one timing definition of the benchmarks (mmdistill/benchmarking/timing.py): interleaved
rounds in rotating order, ratios paired per round, denormals flushed, wall and CPU time."""
import pytest
import torch

from mmdistill.benchmarking.timing import (RoundTimes, Spread, Timing, flushed_denormals,
                                           identical_work_spread, rotated, time_rounds,
                                           warn_if_noisy)


def test_ratios_are_paired_per_round_not_taken_between_medians():
    """Round 1: a=1, b=1, c=3 (ratio 1.5); round 2 (machine twice as busy): a=2, b=2, c=4
    (ratio 1.0); round 3: a=1, b=3, c=4 (1.0). Median of the per-round ratios 1.0, range
    1.0-1.5; the ratio of medians would be 4 / (1 + 2) = 1.33."""
    timing = Timing(dict(a=RoundTimes(wall=[1, 2, 1]), b=RoundTimes(wall=[1, 2, 3]),
                         c=RoundTimes(wall=[3, 4, 4])), load_start=0.5, load_end=0.7)
    spread = timing.ratio('c', ['a', 'b'])
    assert (spread.median, spread.low, spread.high) == (1.0, 1.0, 1.5)
    assert spread.max_over_min == 1.5
    assert timing.times['c'].median_ms() == 4000.0
    assert str(Spread(1.0, 0.95, 1.2)) == '1 [0.95, 1.2]'
    with pytest.raises(ValueError, match='no rounds were timed'):
        Spread.of([])


def test_rounds_interleave_the_variants_in_rotating_order_after_the_warm_up():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in 'abc'}
    timing = time_rounds(steps, rounds=3, warmup=2, repeats=2)
    # 5 rounds, each variant twice in a row, the order starting one later every round.
    expected = []
    for index in range(5):
        expected += [name for name in rotated('abc', index) for _ in range(2)]
    assert calls == expected
    assert rotated('abc', 4) == ['b', 'c', 'a']
    for name in 'abc':  # only the timed rounds are kept, wall and CPU time each
        assert len(timing.times[name].wall) == len(timing.times[name].cpu) == 3
        assert all(seconds >= 0 for seconds in timing.times[name].wall)
    with pytest.raises(ValueError, match=r'warmup \(1\) at least 2'):
        time_rounds(steps, rounds=1, warmup=1)


def test_cpu_time_counts_work_and_not_waiting():
    """A step that sleeps spends wall time and (almost) no CPU time; one that multiplies
    spends both."""
    import time
    a = torch.randn(256, 256)
    timing = time_rounds(dict(sleep=lambda: time.sleep(0.02), work=lambda: [a @ a for _ in
                                                                            range(20)]),
                         rounds=2, warmup=2)
    sleep, work = timing.times['sleep'], timing.times['work']
    assert min(sleep.wall) >= 0.02 and max(sleep.cpu) < 0.01
    assert min(work.cpu) > 0


def test_subnormals_are_flushed_while_timing_and_not_after():
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # below float32's smallest normal
    with flushed_denormals() as supported:
        inside = (tiny * 1.0).item()
    assert (tiny * 1.0).item() == pytest.approx(1e-39, rel=1e-3)  # the default is back
    if supported:
        assert inside == 0.0


def test_noisy_rounds_are_reported():
    assert not warn_if_noisy('calm', Spread(1.0, 0.95, 1.05))
    assert warn_if_noisy('busy', Spread(1.0, 0.8, 1.3))


def test_identical_work_spreads_around_a_true_ratio_of_one():
    """Three copies of one call: each round's first / (second + third), scaled by 2, is 1 up
    to the machine's noise (unscaled it would be 0.5); two copies: first / second. In CPU time,
    which a busy machine's other jobs do not inflate."""
    three = identical_work_spread(variants=3, call_ms=10, rounds=15, clock='cpu')
    assert 0.75 < three.median < 1.33
    assert three.low <= three.median <= three.high and three.max_over_min >= 1
    two = identical_work_spread(variants=2, call_ms=10, rounds=15, clock='cpu')
    assert 0.75 < two.median < 1.33
    with pytest.raises(ValueError, match=r'variants \(1\) must be at least 2'):
        identical_work_spread(variants=1)


class _Classifier(torch.nn.Module):
    """A linear classifier called the way mmpretrain's are (``mode='tensor'``)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, width),
                                        torch.nn.Linear(width, 10))

    def forward(self, images, mode='tensor'):
        return self.body(images)


def test_upop_speed_table_pairs_each_model_with_the_dense_one_per_round():
    """The dense model against itself: speed-up 1 in every round, FLOPs reduction 1. A model
    with a quarter of the hidden width: (192·64 + 64·10) / (192·16 + 16·10) MACs fewer."""
    from projects.upop.benchmark import measure
    torch.manual_seed(0)
    results = measure(dict(dense=_Classifier(64), pruned=_Classifier(16)), image_size=8,
                      batch=4, rounds=3, repeats=1)
    dense, pruned = results['dense'], results['pruned']
    assert dense['speedup'] == dense['speedup_low'] == dense['speedup_high'] == 1.0
    assert dense['cpu_speedup'] == 1.0 and dense['flops_reduction'] == 1.0
    assert pruned['flops_reduction'] == pytest.approx((192 * 64 + 64 * 10) / (192 * 16 + 16 * 10))
    assert pruned['speedup_low'] <= pruned['speedup'] <= pruned['speedup_high']
    assert pruned['params'] == 192 * 16 + 16 + 16 * 10 + 10
