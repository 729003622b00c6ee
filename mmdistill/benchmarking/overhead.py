"""What distillation costs on top of its floor: the student's own step plus the teacher's forward.

The least a distillation step can cost is the student's training step plus the teacher's
forward pass, without autograd and only as deep as its deepest tap. :func:`benchmark_overhead`
times the three (interleaved rounds after a warm-up, ratios paired per round) and counts the
leaf modules that run in the teacher and in the student, so that a teacher tapped in its neck
is seen not to run its head. :func:`mmdistill.apis.benchmark_config` runs it on a config's
distiller, ``tools/analysis/benchmark_overhead.py`` is its command line.
"""
import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from torch import nn

from mmdistill.distillers import Distiller
from .module_usage import ModuleUsage, count_modules_run, joined_usage
from .timing import Spread, time_rounds, warn_if_noisy

@dataclass
class OverheadResult:
    """Median milliseconds of the three steps, the network input and the modules that ran.

    ``floor_ms = student_step_ms + teacher_forward_ms``; ``ratio`` is the median over rounds
    of each round's ``distill_step / (student_step + teacher_forward)`` (paired: the three
    steps of a round run back to back), with its range in ``ratio_spread`` and the same in
    process CPU time in ``cpu_ratio_spread``; ``overhead_pct = 100 * (ratio - 1)``.
    ``teacher_modules`` is ``None`` when no loss taps a teacher; ``teacher_dtype`` is the
    precision the teacher runs in (``'float32'``, ``'bfloat16'``, ``'float16'``);
    ``cpu_ms`` the median CPU milliseconds of each step; ``load_start`` / ``load_end`` the
    machine's one-minute load average around the timing. A result built from medians alone
    (no spreads) has the ratio of the medians.
    """
    student_step_ms: float
    teacher_forward_ms: float
    distill_step_ms: float
    input_shape: Tuple[int, ...]
    teacher_modules: Optional[ModuleUsage]
    student_modules: ModuleUsage
    teacher_dtype: str = 'float32'
    ratio_spread: Optional[Spread] = None
    cpu_ratio_spread: Optional[Spread] = None
    cpu_ms: Dict[str, float] = field(default_factory=dict)
    load_start: float = float('nan')
    load_end: float = float('nan')

    @property
    def floor_ms(self) -> float:
        return self.student_step_ms + self.teacher_forward_ms

    @property
    def ratio(self) -> float:
        if self.ratio_spread is not None:
            return self.ratio_spread.median
        return self.distill_step_ms / self.floor_ms

    @property
    def overhead_pct(self) -> float:
        return 100.0 * (self.ratio - 1.0)

    def to_dict(self) -> dict:
        return dict(asdict(self), floor_ms=self.floor_ms, ratio=self.ratio,
                    overhead_pct=self.overhead_pct)


def _frozen_sgd(model: nn.Module) -> OptimWrapper:
    """SGD at learning rate 0: a full optimiser step whose weights never change, so that every
    timed round does the same work (random weights trained at a real rate can diverge within
    the timed steps, and a diverging model's subnormal gradients cost several times more)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.SGD(params, lr=0.0, momentum=0.9))


def benchmark_overhead(distiller: Distiller, data: dict, warmup: int = 5,
                       iters: int = 20) -> OverheadResult:
    """Time (a) the student's training step alone, (b) the teacher's forward as the distiller
    runs it and (c) the distiller's training step, on one batch.

    (a) and (c) are full training steps as MMEngine's loop runs them (``train_step``: data
    preprocessor, ``mode='loss'``, loss parsing, backward, SGD step at learning rate 0,
    zero_grad). (b) runs the teacher in ``tensor`` mode under ``no_grad`` through the
    distiller's teacher taps with ``stop_early=True``, on the batch the student's preprocessor
    prepared. The steps are timed in interleaved rounds by
    :func:`~mmdistill.benchmarking.timing.time_rounds` (rotating order, denormals flushed, wall
    and CPU time), and the ratio is paired per round. A warning is logged when the rounds'
    ratios disagree by more than :data:`~mmdistill.benchmarking.timing.NOISY_SPREAD` or the
    loss is not finite.

    Args:
        distiller: the distiller (it is set to train mode; its weights do not change).
        data: one batch as a dataloader yields it: ``dict(inputs=..., data_samples=...)``.
        warmup: untimed rounds first; at least 2 (the teacher's first pass is a full one: the
            taps learn how many calls to wait for before stopping early).
        iters: timed rounds.
    """
    distiller.train()
    prepared = distiller.data_preprocessor(copy.deepcopy(data), True)
    inputs, data_samples = prepared['inputs'], prepared['data_samples']
    tapped = {teacher.prefix: teacher for teacher in distiller.teachers.values() if teacher.taps}
    runs_teacher = bool(tapped)

    student_optim, distill_optim = _frozen_sgd(distiller.student), _frozen_sgd(distiller)
    # Each training step gets a fresh copy of the batch (preprocessors may edit data samples
    # in place); the copy is timed in both training steps alike.
    steps = dict(
        student_step=lambda: distiller.student.train_step(copy.deepcopy(data), student_optim),
        teacher_forward=lambda: distiller.teacher_forward(inputs, data_samples),
        distill_step=lambda: distiller.train_step(copy.deepcopy(data), distill_optim))
    if not runs_teacher:
        del steps['teacher_forward']
    timing = time_rounds(steps, rounds=iters, warmup=warmup)
    floor = [name for name in ('student_step', 'teacher_forward') if name in steps]
    ratio_spread = timing.ratio('distill_step', floor)
    warn_if_noisy('distillation step / floor', ratio_spread)

    # Both models' modules are counted in one distillation step: the teacher's are those that
    # Distiller.loss runs (stopped at its deepest tap), not those of a pass of our own.
    log_vars = {}
    models = dict(student=distiller.student,
                  **{name: teacher.model for name, teacher in tapped.items()})
    modules = count_modules_run(
        models, lambda: log_vars.update(distiller.train_step(copy.deepcopy(data), distill_optim)))
    loss = float(log_vars['loss'].detach())
    if not math.isfinite(loss):
        print_log(f'the distillation loss is {loss}: a step on non-finite values does not '
                  'do the work of a real one, so these timings may not be representative',
                  logger='current', level=logging.WARNING)
    times = timing.times
    return OverheadResult(
        student_step_ms=times['student_step'].median_ms(),
        teacher_forward_ms=times['teacher_forward'].median_ms() if runs_teacher else 0.0,
        distill_step_ms=times['distill_step'].median_ms(),
        input_shape=tuple(inputs.shape),
        teacher_modules=joined_usage({name: modules[name] for name in tapped}),
        student_modules=modules['student'],
        teacher_dtype=','.join(sorted({str(teacher.dtype).replace('torch.', '')
                                       for teacher in tapped.values()})) or 'float32',
        ratio_spread=ratio_spread,
        cpu_ratio_spread=timing.ratio('distill_step', floor, clock='cpu'),
        cpu_ms={name: times[name].median_ms('cpu') for name in times},
        load_start=timing.load_start, load_end=timing.load_end)
