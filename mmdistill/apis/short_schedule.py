"""A config's parameter schedulers clipped to a smoke test's short run.

The smoke test trains one epoch of ``iters`` iterations (or ``iters`` iterations of an
iteration-based loop, which the Runner also counts as one epoch of ``iters`` batches). A
schedule written for hundreds of epochs does not fit it: a warm-up of 20 epochs followed by a
cosine from epoch 20 makes MMEngine build the cosine from epoch 20 to its default end, the
run's single epoch, and refuse it (``end should be larger than begin``).

:func:`clip_param_schedulers` keeps every scheduler, of its own type, and clips its steps to
the run, counted in its own unit: epochs for a ``by_epoch`` scheduler (the run has 1), else
iterations (the run has ``iters``). A ``by_epoch`` scheduler with ``convert_to_iter_based`` is
first counted in iterations of the run's epoch, as MMEngine's ``build_iter_from_epoch``
converts it (``by_epoch=False`` in the result). With ``n`` steps in the run:

- ``begin`` becomes ``min(begin, n - 1)`` and ``end`` ``max(min(end, n), begin + 1)`` (no
  ``end`` is the end of the run): a scheduler that starts after the run's last step runs on
  that last step, so each one is built and stepped;
- the fields counted from ``begin`` are cut to the clipped span ``end - begin``: ``T_max``,
  ``step_size`` and ``total_steps`` to at most the span, ``milestones`` to those inside it,
  ``periods`` (with their ``restart_weights``) to those that start inside it, the last one
  shortened to end with the span.
"""
from typing import List, Union

# Step counts that MMEngine's build_iter_from_epoch multiplies by the epoch length (begin and
# end it also truncates to integers).
SCALED_COUNTS = ('T_max', 'step_size', 'total_steps')
SCALED_LISTS = ('milestones', 'periods')
Schedulers = Union[dict, List[dict]]


def in_iterations(scheduler: dict, epoch_length: int) -> dict:
    """A ``by_epoch`` scheduler with ``convert_to_iter_based`` counted in iterations of
    ``epoch_length`` (``by_epoch=False``), as MMEngine builds it; others unchanged."""
    if not (scheduler.get('by_epoch', True) and scheduler.get('convert_to_iter_based')):
        return dict(scheduler)
    converted = {key: value for key, value in scheduler.items()
                 if key != 'convert_to_iter_based'}
    converted['by_epoch'] = False
    for key in ('begin', 'end'):
        if key in converted:
            converted[key] = int(converted[key] * epoch_length)
    for key in SCALED_COUNTS:
        if converted.get(key) is not None:
            converted[key] = converted[key] * epoch_length
    for key in SCALED_LISTS:
        if key in converted:
            converted[key] = [value * epoch_length for value in converted[key]]
    return converted


def _clip_periods(scheduler: dict, span: int) -> None:
    """Keep the periods that start inside ``span`` (and their restart weights), the last one
    ending with it."""
    periods, start = [], 0
    for period in scheduler['periods']:
        if start >= span:
            break
        periods.append(min(period, span - start))
        start += period
    scheduler['periods'] = periods
    if 'restart_weights' in scheduler:
        scheduler['restart_weights'] = list(scheduler['restart_weights'])[:len(periods)]


def clip_scheduler(scheduler: dict, iters: int) -> dict:
    """One scheduler dict clipped to a run of one epoch of ``iters`` iterations (see the
    module's docstring for the rules)."""
    clipped = in_iterations(scheduler, iters)
    steps = 1 if clipped.get('by_epoch', True) else iters
    begin = min(clipped.get('begin', 0), steps - 1)
    end = max(min(clipped.get('end', steps), steps), begin + 1)
    clipped.update(begin=begin, end=end)
    span = end - begin
    for key in SCALED_COUNTS:
        if clipped.get(key) is not None:
            clipped[key] = min(clipped[key], span)
    if 'milestones' in clipped:
        clipped['milestones'] = [step for step in clipped['milestones'] if step < span]
    if 'periods' in clipped:
        _clip_periods(clipped, span)
    return clipped


def clip_param_schedulers(schedulers: Union[Schedulers, dict, None],
                          iters: int) -> Union[Schedulers, dict, None]:
    """``param_scheduler`` of a config clipped to one epoch of ``iters`` iterations: one
    scheduler dict, a list of them, or a dict of such per optimizer (several optimizers), in
    the same form."""
    if schedulers is None:
        return None
    if isinstance(schedulers, dict) and 'type' not in schedulers:
        return {name: clip_param_schedulers(value, iters) for name, value in schedulers.items()}
    if isinstance(schedulers, dict):
        return clip_scheduler(schedulers, iters)
    return [clip_scheduler(scheduler, iters) for scheduler in schedulers]
