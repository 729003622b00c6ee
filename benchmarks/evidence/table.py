"""A results table rendered as markdown: description, table, provenance."""
from typing import List, Optional

from .provenance import describe_provenance
from .results import Results
from .summary import paired_difference, paired_differences, summarise


def _number(value: Optional[float], precision: int, signed: bool = False) -> str:
    if value is None:
        return '–'
    if abs(value) < 0.5 * 10**-precision:
        value = 0.0  # no '-0.00' for a rounding error below zero
    return f'{value:+.{precision}f}' if signed else f'{value:.{precision}f}'


def _mean_std(mean: float, std: Optional[float], precision: int, signed=False) -> str:
    text = _number(mean, precision, signed)
    return text if std is None else f'{text} ± {std:.{precision}f}'


def _column(value: Optional[float], form: str) -> str:
    return '–' if value is None else form.format(value)


def render_table(results: Results) -> str:
    """The markdown table: per model the seeds, mean ± std (ddof=1), the value at each seed;
    for the compared models the paired difference against their baseline (mean ± std, the
    differences seed by seed, how many are above zero; the baseline in a column of its own
    when they differ); the extra ``columns``; mean train time and ms/iteration where
    measured."""
    p = results.precision
    summaries = summarise(results)
    paired = paired_differences(results)
    timed = any(s.train_seconds is not None for s in summaries)
    per_iter = any(s.ms_per_iter is not None for s in summaries)
    header = ['model', 'seeds', results.metric, f'{results.metric} per seed']
    baselines = sorted({d.baseline for d in paired.values()})
    several_baselines = len(baselines) > 1
    if paired:
        header += [f'Δ vs {"its baseline" if several_baselines else baselines[0]} (paired)',
                   'Δ per seed', 'Δ > 0'] + ['baseline'] * several_baselines
    header += [c['header'] for c in results.columns]
    header += ['train time (s)'] * timed + ['ms/iteration'] * per_iter
    rows = [header, ['---'] * len(header)]
    for s in summaries:
        row = [s.model, str(len(s.seeds)), _mean_std(s.mean, s.std, p),
               ', '.join(_number(v, p) for v in s.values)]
        if paired:
            d = paired.get(s.model)
            row += ([_mean_std(d.mean, d.std, p, signed=True),
                     ', '.join(_number(v, p, signed=True) for v in d.differences),
                     f'{d.positive}/{d.n}'] if d else ['', '', ''])
            row += [d.baseline if d else ''] * several_baselines
        row += [_column(s.columns[c['field']], c['format']) for c in results.columns]
        row += [_number(s.train_seconds, 1)] * timed + [_number(s.ms_per_iter, 0)] * per_iter
        rows.append(row)
    return '\n'.join('| ' + ' | '.join(row) + ' |' for row in rows)


def render_paired_table(results: Results) -> str:
    """The pairs of ``results.also_paired`` (those run so far): seeds, mean ± std of the
    differences, the differences seed by seed, how many are above zero."""
    p = results.precision
    present = set(results.models())
    rows = [['paired difference', 'seeds', f'Δ {results.metric}', 'Δ per seed', 'Δ > 0'],
            ['---'] * 5]
    for model, baseline in results.also_paired:
        if {model, baseline} <= present:
            d = paired_difference(results, model, baseline)
            rows.append([f'{model} − {baseline}', str(d.n),
                         _mean_std(d.mean, d.std, p, signed=True),
                         ', '.join(_number(v, p, signed=True) for v in d.differences),
                         f'{d.positive}/{d.n}'])
    return '\n'.join('| ' + ' | '.join(row) + ' |' for row in rows)


def _significant(value) -> str:
    """A detail value in 3 significant digits; a list (early, late) as ``a→b``."""
    if isinstance(value, (list, tuple)):
        return '→'.join(_significant(v) for v in value)
    return f'{value:.3g}' if isinstance(value, (int, float)) else str(value)


def render_details(results: Results, field: str) -> str:
    """One row per (model, seed) of the records that have ``extra[field]``. A dict (a loss
    profile, say) shows its plain entries joined in one column (``key value``, a list as
    ``early→late``) and each entry that is itself a dict in a column of its own (``key (a /
    b)``, its values in that order); any other value (text, a number) fills the one column."""
    records = [r for model in results.models() for r in results.of(model)
               if r.extra.get(field) not in (None, '')]
    if not records:
        raise ValueError(f'no record of table {results.table!r} has {field!r} among its extra '
                         'fields: name one its script records')
    nested = {}  # key -> its sub-keys, in first-seen order
    for record in records:
        detail = record.extra[field]
        for key, value in (detail.items() if isinstance(detail, dict) else ()):
            if isinstance(value, dict):
                nested.setdefault(key, {}).update(dict.fromkeys(value))
    header = ['model', 'seed', field] + [f'{key} ({" / ".join(subkeys)})'
                                         for key, subkeys in nested.items()]
    rows = [header, ['---'] * len(header)]
    for record in records:
        detail = record.extra[field]
        if not isinstance(detail, dict):
            detail = {'': detail}
        plain = ' '.join(f'{key} {_significant(value)}'.strip() for key, value in detail.items()
                         if not isinstance(value, dict))
        row = [record.model, str(record.seed), plain]
        for key, subkeys in nested.items():
            values = detail.get(key)
            row.append('–' if values is None else ' / '.join(
                _significant(values[k]) if k in values else '–' for k in subkeys))
        rows.append(row)
    return '\n'.join('| ' + ' | '.join(row) + ' |' for row in rows)


def render_provenance(results: Results) -> List[str]:
    """One line per run that produced a record of the table, with the models it produced."""
    lines = []
    for key, provenance in results.runs.items():
        models = [m for m in results.models() if any(r.run == key for r in results.of(m))]
        seeds = sorted({r.seed for r in results.records if r.run == key})
        lines.append(f'- {", ".join(models)} (seeds {", ".join(map(str, seeds))}): '
                     f'{describe_provenance(provenance)}')
    return lines


def render_markdown(results: Results, source: Optional[str] = None) -> str:
    """Description, table, further paired differences, notes and provenance, as a README
    block shows them."""
    parts = [results.description] if results.description else []
    parts.append(render_table(results))
    present = set(results.models())
    if any({model, baseline} <= present for model, baseline in results.also_paired):
        parts.append(render_paired_table(results))
    if results.notes:
        parts.append(results.notes)
    origin = f' (`{source}`)' if source else ''
    parts.append(f'Produced by{origin}:\n' + '\n'.join(render_provenance(results)))
    return '\n\n'.join(parts)
