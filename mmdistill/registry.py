"""mmdistill's registries: children of MMEngine's root registries, scope ``mmdistill``.

Configs name our modules with the scope prefix (``type='mmdistill.Distiller'``) so that they are
found whatever the student config's ``default_scope`` is; the distiller builds its losses inside
this scope itself.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmdistill',
    locations=['mmdistill.distillers', 'mmdistill.losses'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmdistill', locations=['mmdistill.hooks'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmdistill',
    locations=['mmdistill.engine'])
