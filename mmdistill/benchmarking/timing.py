"""Timing several variants of a step fairly on a shared CPU: the one definition every benchmark
of this repository uses (the distillation overhead, UPop's and CrossGET's speed tables).

What a measurement here means:

- **Interleaved rounds.** Each round runs every variant once, in an order that rotates from
  round to round, so that a change of machine load hits all variants alike and none always
  runs right after the same other one. Ratios between variants are taken *per round* and then
  summarised (median, min and max): a paired measurement, not a ratio of two medians taken at
  different moments.
- **Wall and CPU time.** Each call records ``time.perf_counter`` and ``time.process_time``
  (the CPU time of every thread of this process). On a loaded machine the wall time grows
  with the load; the CPU time much less.
- **Denormals flushed.** Subnormal floats (gradients of a diverging or barely trained model)
  make a CPU multiply up to tens of times slower; while timing they are flushed to zero
  (``torch.set_flush_denormal``), so that the time measures the arithmetic of the step, not
  the magnitude of its values.
- **Warm-up.** The first ``warmup`` rounds (at least 2: allocator, caches, lazy
  initialisation, a teacher's first full pass) are run and not kept.
- **The load.** The one-minute load average is read before and after, so that a table can
  say on what machine state it was measured.
- **The machine's own spread.** :func:`identical_work_spread` times one fixed matrix product
  as several variants in the same rounds: the ratio's true value is known (1), so its max / min
  is the spread the machine alone gives a paired ratio, the floor a benchmark's spread cannot
  go under. (A virtual machine whose host shares its cores gives this no idle-core floor.)
"""
import logging
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Sequence

import torch
from mmengine.logging import print_log

#: A per-round ratio whose max / min exceeds this is reported as noisy.
NOISY_SPREAD = 1.15


@dataclass
class Spread:
    """The median, the smallest and the largest of per-round values."""
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> 'Spread':
        if not values:
            raise ValueError('no rounds were timed: give at least one timed round')
        return cls(statistics.median(values), min(values), max(values))

    @property
    def max_over_min(self) -> float:
        """``high / low``: 1 when every round agreed."""
        return self.high / self.low if self.low > 0 else float('inf')

    def scaled(self, factor: float) -> 'Spread':
        return Spread(self.median * factor, self.low * factor, self.high * factor)

    def __str__(self) -> str:
        return f'{self.median:.3g} [{self.low:.3g}, {self.high:.3g}]'


@dataclass
class RoundTimes:
    """Seconds per call of one variant, one value per timed round."""
    wall: List[float] = field(default_factory=list)
    cpu: List[float] = field(default_factory=list)

    def median_ms(self, clock: str = 'wall') -> float:
        return 1000.0 * statistics.median(getattr(self, clock))


@dataclass
class Timing:
    """What :func:`time_rounds` measured: per-variant times and the load around them."""
    times: Dict[str, RoundTimes]
    load_start: float
    load_end: float

    def ratio(self, numerator: str, denominator: Sequence[str], clock: str = 'wall') -> Spread:
        """Per-round ``numerator / sum(denominator)``, summarised (paired by round)."""
        num = getattr(self.times[numerator], clock)
        dens = [getattr(self.times[name], clock) for name in denominator]
        return Spread.of([n / sum(d) for n, *d in zip(num, *dens)])


def load_average() -> float:
    """The one-minute load average (``nan`` where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float('nan')


@contextmanager
def flushed_denormals() -> Iterator[bool]:
    """Flush subnormal floats to zero inside the block (where the CPU supports it); yields
    whether it does. The default (no flushing) is restored afterwards."""
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        torch.set_flush_denormal(False)


def rotated(names: Sequence[str], round_index: int) -> List[str]:
    """``names`` started at position ``round_index`` (modulo their count)."""
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])


def time_rounds(steps: Dict[str, Callable[[], object]], rounds: int, warmup: int = 2,
                repeats: int = 1) -> Timing:
    """Time each of ``steps`` once per round, interleaved, after ``warmup`` untimed rounds.

    Args:
        steps: variant name -> a call that does one step of it. A step must do the same work
            every time it is called (e.g. a training step at learning rate 0).
        rounds: timed rounds (>= 1).
        warmup: untimed rounds first (>= 2).
        repeats: calls per variant and round; the time kept is their mean.
    """
    if rounds < 1 or warmup < 2 or repeats < 1:
        raise ValueError(f'rounds ({rounds}) and repeats ({repeats}) must be at least 1 and '
                         f'warmup ({warmup}) at least 2: the first calls of a model pay for '
                         'allocation and lazy set-up, not for its arithmetic')
    names = list(steps)
    times = {name: RoundTimes() for name in names}
    load_start = load_average()
    with flushed_denormals():
        for index in range(warmup + rounds):
            for name in rotated(names, index):
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(repeats):
                    steps[name]()
                if index >= warmup:
                    times[name].wall.append((time.perf_counter() - wall) / repeats)
                    times[name].cpu.append((time.process_time() - cpu) / repeats)
    return Timing(times, load_start, load_average())


def identical_work_spread(variants: int = 3, call_ms: float = 50.0, rounds: int = 20,
                          warmup: int = 2, clock: str = 'wall') -> Spread:
    """The spread of a paired ratio whose every variant does the same work.

    One call multiplies two fixed 256×256 float32 matrices as many times as last ``call_ms``
    milliseconds (calibrated first); ``variants`` copies of it are timed by
    :func:`time_rounds`, and each round's ratio is ``(variants - 1) * first / sum(others)``:
    the shape of ``c / (a + b)`` for three variants, scaled so that its true value is 1. Its
    max / min is what the machine alone does to a benchmark's ``rounds max/min`` (in ``clock``:
    ``'wall'``, as the benchmarks' spreads, or ``'cpu'``).
    """
    if variants < 2:
        raise ValueError(f'variants ({variants}) must be at least 2: a ratio needs two')
    left, right = torch.randn(256, 256), torch.randn(256, 256)
    start = time.perf_counter()
    for _ in range(10):
        left @ right
    products = max(1, round(call_ms / 1000.0 / ((time.perf_counter() - start) / 10)))

    def call() -> None:
        for _ in range(products):
            left @ right

    names = [f'copy {index}' for index in range(variants)]
    timing = time_rounds({name: call for name in names}, rounds=rounds, warmup=warmup)
    return timing.ratio(names[0], names[1:], clock).scaled(variants - 1)


def warn_if_noisy(what: str, spread: Spread, limit: float = NOISY_SPREAD) -> bool:
    """Log a warning when the rounds of ``spread`` disagree by more than ``limit``
    (max / min); returns whether they did."""
    noisy = spread.max_over_min > limit
    if noisy:
        print_log(f'{what}: the rounds disagree (max/min {spread.max_over_min:.2f} > {limit}; '
                  f'median {spread.median:.3g}, range {spread.low:.3g}-{spread.high:.3g}): '
                  'the machine was busy or the step does not do the same work every round; '
                  'measure again on an idle machine or with more rounds',
                  logger='current', level=logging.WARNING)
    return noisy
