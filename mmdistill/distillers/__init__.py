from .distiller import Distiller
from .tap_check import check_taps, dry_run
from .taps import ModuleTaps, Tap, TapMean
from .teacher import FrozenTeacher, build_teacher
from .teachers import Teachers

__all__ = ['Distiller', 'FrozenTeacher', 'ModuleTaps', 'Tap', 'TapMean', 'Teachers',
           'build_teacher', 'check_taps', 'dry_run']
