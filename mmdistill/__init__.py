"""mmdistill: knowledge distillation for OpenMMLab 2.x configs, by inheritance.

Importing the package registers the distiller, the losses and the hooks in the ``mmdistill``
scope and changes nothing else: checkpoints are read weights-only where mmdistill loads them
(teachers; ``load_from`` and resume through its Runner), each inside
:func:`mmdistill.engine.safe_checkpoint_loading`, see :mod:`mmdistill.engine.checkpoint`.
Configs bring it in with
``custom_imports = dict(imports=['mmdistill'], allow_failed_imports=False)``.
"""
import os

# albumentations (imported by mmpose's transforms) asks PyPI for a newer version at import
# time, up to 2 s on a machine without network; its documented switch turns that off.
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

from .version import __version__

from . import apis, distillers, hooks, losses  # noqa: E402,F401  (register the modules)

__all__ = ['__version__']
