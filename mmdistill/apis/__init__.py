from mmdistill.benchmarking import benchmark_overhead, synthetic_batch
from .benchmark import benchmark_config
from .builder import build_distiller
from .export import export_student, is_distiller_config, student_config, student_state_dict

__all__ = ['benchmark_config', 'benchmark_overhead', 'build_distiller', 'synthetic_batch',
           'export_student', 'is_distiller_config', 'student_config', 'student_state_dict']
