"""Summaries of a results table: mean ± std per model and paired per-seed differences."""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .results import Results


def mean_std(values: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (ddof=1; ``None`` for fewer than two values)."""
    values = list(values)
    if not values:
        raise ValueError('mean_std needs at least one value')
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclass
class ModelSummary:
    """One model over its seeds."""
    model: str
    seeds: List[int]
    values: List[float]
    mean: float
    std: Optional[float]
    train_seconds: Optional[float]  # mean over the seeds that measured it
    ms_per_iter: Optional[float]
    columns: Dict[str, Optional[float]]  # mean of each extra column's field


@dataclass
class PairedDifference:
    """``model − baseline`` seed by seed, over the seeds both have.

    With ``d_s = x_s − b_s`` for the common seeds ``s``: ``mean`` and ``std`` (ddof=1) of the
    ``d_s``, their number ``n`` and how many are above zero (``positive``). Pairing removes what
    a seed does to both runs (data order, initialisation), which an unpaired comparison of two
    means ± std leaves in."""
    model: str
    baseline: str
    seeds: List[int]
    differences: List[float]
    mean: float
    std: Optional[float]

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def positive(self) -> int:
        return sum(d > 0 for d in self.differences)


CONVERGED_WITHIN = 1.0  # points of the metric a converged seed may end below the best seed


def unconverged_seeds(metrics: Sequence[float], within: float = CONVERGED_WITHIN) -> List[int]:
    """The seeds (indices of ``metrics``, one final metric per seed) that ended more than
    ``within`` below the best seed: ``max(m) − m_s > within``: trained too briefly or stuck."""
    best = max(metrics)
    return [seed for seed, metric in enumerate(metrics) if best - metric > within]


def _mean_of(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return math.fsum(values) / len(values) if values else None


def summarise(results: Results) -> List[ModelSummary]:
    """A :class:`ModelSummary` per model, in the order the models were first added."""
    summaries = []
    for model in results.models():
        records = results.of(model)
        values = [r.value for r in records]
        mean, std = mean_std(values)
        summaries.append(ModelSummary(
            model=model, seeds=[r.seed for r in records], values=values, mean=mean, std=std,
            train_seconds=_mean_of(r.train_seconds for r in records),
            ms_per_iter=_mean_of(r.ms_per_iter for r in records),
            columns={c['field']: _mean_of(r.extra.get(c['field']) for r in records)
                     for c in results.columns}))
    return summaries


def paired_difference(results: Results, model: str, baseline: str) -> PairedDifference:
    """``model − baseline`` over the seeds both have; an error names the models when there
    are none."""
    base = {r.seed: r.value for r in results.of(baseline)}
    pairs = [(r.seed, r.value - base[r.seed]) for r in results.of(model) if r.seed in base]
    if not pairs:
        raise ValueError(f'{model!r} and the baseline {baseline!r} have no seed in common '
                         f'(models in the table: {results.models()}): run both at the same '
                         'seeds')
    mean, std = mean_std(d for _, d in pairs)
    return PairedDifference(model, baseline, [s for s, _ in pairs], [d for _, d in pairs],
                            mean, std)


def paired_differences(results: Results) -> Dict[str, PairedDifference]:
    """The paired difference of each compared model against its baseline (pairs not run yet
    are left out)."""
    present = set(results.models())
    return {model: paired_difference(results, model, baseline)
            for model, baseline in results.baselines().items()
            if model in present and baseline in present}
