from .distiller import Distiller
from .taps import ModuleTaps, Tap
from .teacher import build_teacher

__all__ = ['Distiller', 'ModuleTaps', 'Tap', 'build_teacher']
