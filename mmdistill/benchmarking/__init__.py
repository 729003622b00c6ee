"""What distillation costs on top of its floor: the timed steps, the leaf modules that run and
the batches they run on (the entry point is :func:`mmdistill.apis.benchmark_config`)."""
from .batches import synthetic_batch, train_batch
from .module_usage import ModuleUsage, count_modules_run, joined_usage, leaf_modules
from .overhead import OverheadResult, benchmark_overhead

__all__ = ['ModuleUsage', 'OverheadResult', 'benchmark_overhead', 'count_modules_run',
           'joined_usage', 'leaf_modules', 'synthetic_batch', 'train_batch']
