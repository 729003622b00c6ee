"""What distillation costs on top of its floor: the student's own step plus the teacher's forward.

The least a distillation step can cost is the student's training step plus the teacher's
forward pass, without autograd and only as deep as its deepest tap. :func:`benchmark_overhead`
times the three (each a median over many steps after a warm-up) and counts the leaf modules
that run in the teacher and in the student, so that a teacher tapped in its neck is seen not
to run its head. :func:`mmdistill.apis.benchmark_config` runs it on a config's distiller,
``tools/analysis/benchmark_overhead.py`` is its command line.
"""
import copy
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from torch import nn

from mmdistill.distillers import Distiller
from .module_usage import ModuleUsage, count_modules_run, joined_usage

STEPS = ('student_step', 'teacher_forward', 'distill_step')
SGD_LR = 1e-4  # small: random weights must not diverge to NaN within the timed steps


@dataclass
class OverheadResult:
    """Median milliseconds of the three steps, the network input and the modules that ran.

    ``floor_ms = student_step_ms + teacher_forward_ms``, ``ratio = distill_step_ms /
    floor_ms`` and ``overhead_pct = 100 * (distill_step_ms - floor_ms) / floor_ms``.
    ``teacher_modules`` is ``None`` when no loss taps a teacher; ``teacher_dtype`` is the
    precision the teacher runs in (``'float32'``, ``'bfloat16'``, ``'float16'``).
    """
    student_step_ms: float
    teacher_forward_ms: float
    distill_step_ms: float
    input_shape: Tuple[int, ...]
    teacher_modules: Optional[ModuleUsage]
    student_modules: ModuleUsage
    teacher_dtype: str = 'float32'

    @property
    def floor_ms(self) -> float:
        return self.student_step_ms + self.teacher_forward_ms

    @property
    def ratio(self) -> float:
        return self.distill_step_ms / self.floor_ms

    @property
    def overhead_pct(self) -> float:
        return 100.0 * (self.distill_step_ms - self.floor_ms) / self.floor_ms

    def to_dict(self) -> dict:
        return dict(asdict(self), floor_ms=self.floor_ms, ratio=self.ratio,
                    overhead_pct=self.overhead_pct)


def _sgd(model: nn.Module) -> OptimWrapper:
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.SGD(params, lr=SGD_LR, momentum=0.9))


def _median_ms(seconds: Sequence[float]) -> float:
    return 1000.0 * statistics.median(seconds)


def benchmark_overhead(distiller: Distiller, data: dict, warmup: int = 5,
                       iters: int = 20) -> OverheadResult:
    """Time (a) the student's training step alone, (b) the teacher's forward as the distiller
    runs it and (c) the distiller's training step, on one batch.

    (a) and (c) are full training steps as MMEngine's loop runs them (``train_step``: data
    preprocessor, ``mode='loss'``, loss parsing, backward, SGD step, zero_grad). (b) runs the
    teacher in ``tensor`` mode under ``no_grad`` through the distiller's teacher taps with
    ``stop_early=True``, on the batch the student's preprocessor prepared. The three steps
    take turns in each round, so that a change of machine load affects all three alike; the
    first ``warmup`` rounds are not timed.

    Args:
        distiller: the distiller (it is set to train mode and its student is updated).
        data: one batch as a dataloader yields it: ``dict(inputs=..., data_samples=...)``.
        warmup: untimed rounds first; at least 1, since the teacher's first pass is a full one
            (the taps learn how many calls to wait for before stopping early).
        iters: timed rounds.
    """
    if warmup < 1 or iters < 1:
        raise ValueError(f'warmup ({warmup}) and iters ({iters}) must be at least 1: the first '
                         "round runs the whole teacher, to learn where its taps let it stop")
    distiller.train()
    prepared = distiller.data_preprocessor(copy.deepcopy(data), True)
    inputs, data_samples = prepared['inputs'], prepared['data_samples']
    tapped = {teacher.prefix: teacher for teacher in distiller.teachers.values() if teacher.taps}
    runs_teacher = bool(tapped)

    def teacher_forward():
        distiller.teacher_forward(inputs, data_samples)

    student_optim, distill_optim = _sgd(distiller.student), _sgd(distiller)
    steps = dict(
        student_step=lambda batch: distiller.student.train_step(batch, student_optim),
        teacher_forward=lambda batch: teacher_forward() if runs_teacher else None,
        distill_step=lambda batch: distiller.train_step(batch, distill_optim))
    seconds: Dict[str, list] = {name: [] for name in STEPS}
    for round_ in range(warmup + iters):
        for name in STEPS:
            batch = copy.deepcopy(data)  # preprocessors may edit data samples in place
            start = time.perf_counter()
            steps[name](batch)
            if round_ >= warmup:
                seconds[name].append(time.perf_counter() - start)

    # Both models' modules are counted in one distillation step: the teacher's are those that
    # Distiller.loss runs (stopped at its deepest tap), not those of a pass of our own.
    log_vars = {}
    models = dict(student=distiller.student,
                  **{name: teacher.model for name, teacher in tapped.items()})
    modules = count_modules_run(
        models, lambda: log_vars.update(steps['distill_step'](copy.deepcopy(data))))
    loss = float(log_vars['loss'].detach())
    if not math.isfinite(loss):
        print_log(f'the distillation loss is {loss} after {warmup + iters} steps: '
                  'timings of non-finite values may not be representative',
                  logger='current', level=logging.WARNING)
    return OverheadResult(
        student_step_ms=_median_ms(seconds['student_step']),
        teacher_forward_ms=_median_ms(seconds['teacher_forward']) if runs_teacher else 0.0,
        distill_step_ms=_median_ms(seconds['distill_step']),
        input_shape=tuple(inputs.shape),
        teacher_modules=joined_usage({name: modules[name] for name in tapped}),
        student_modules=modules['student'],
        teacher_dtype=','.join(sorted({str(teacher.dtype).replace('torch.', '')
                                       for teacher in tapped.values()})) or 'float32')
