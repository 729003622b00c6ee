"""What is specific to each OpenMMLab codebase, in one module per codebase.

Each module registers one :class:`Codebase` under its scope (``mmdet``, ...), found with
:func:`get_codebase`; :class:`Codebase` says what a further codebase provides.
"""
from .base import CODEBASES, Codebase, SmokeData, get_codebase, register_codebase
from . import mmdet, mmpose, mmpretrain, mmseg  # noqa: F401  (register the codebases)

__all__ = ['CODEBASES', 'Codebase', 'SmokeData', 'get_codebase', 'register_codebase']
