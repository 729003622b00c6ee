from .benchmark import benchmark_config, benchmark_overhead, synthetic_batch
from .export import export_student, is_distiller_config, student_config, student_state_dict

__all__ = ['benchmark_config', 'benchmark_overhead', 'synthetic_batch', 'export_student',
           'is_distiller_config', 'student_config', 'student_state_dict']
