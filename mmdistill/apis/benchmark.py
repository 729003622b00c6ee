"""Timing a config's distillation step against its floor (:mod:`mmdistill.benchmarking`),
the entry point of ``tools/analysis/benchmark_overhead.py``."""
import logging
from typing import Optional, Tuple

from mmengine.logging import print_log
from mmengine.runner import set_random_seed

from mmdistill.benchmarking import (OverheadResult, benchmark_overhead, synthetic_batch,
                                    train_batch)
from .builder import build_distiller


def benchmark_config(config: str, batch_size: int, input_size: Tuple[int, int] = (224, 224),
                     data: str = 'synthetic', cfg_options: Optional[dict] = None,
                     teacher_checkpoint: Optional[str] = None, warmup: int = 5,
                     iters: int = 20, seed: int = 0) -> OverheadResult:
    """:func:`benchmark_overhead` on a config's distiller.

    Args:
        data: ``'synthetic'`` (a :func:`synthetic_batch` of ``input_size``) or ``'train'``
            (the first batch of the config's ``train_dataloader``; ``input_size`` unused).
    """
    if data not in ('synthetic', 'train'):
        raise ValueError(f"data must be 'synthetic' or 'train', not '{data}'")
    set_random_seed(seed)
    distiller, cfg = build_distiller(config, cfg_options, teacher_checkpoint)
    if data == 'train':
        batch = train_batch(cfg, batch_size, seed)
    else:
        batch = synthetic_batch(distiller.student, distiller.student_scope, batch_size,
                                input_size, seed)
    result = benchmark_overhead(distiller, batch, warmup, iters)
    if data == 'synthetic' and result.input_shape[-2:] != tuple(input_size):
        print_log(f'{config}: the student\'s data preprocessor turned {tuple(input_size)} '
                  f'images into {result.input_shape[-2:]} network inputs (it pads to a fixed '
                  'size or a size divisor); override it through cfg_options, e.g. '
                  'model.student.data_preprocessor.size, to time another size',
                  logger='current', level=logging.WARNING)
    return result
