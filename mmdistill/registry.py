"""mmdistill's registries, scope ``mmdistill``: children of MMEngine's root registries, and
``WEIGHT_SCHEDULES`` of our own (MMEngine has no registry of loss-weight schedules).

Configs name our modules with the scope prefix (``type='mmdistill.Distiller'``) so that they are
found whatever the student config's ``default_scope`` is; the distiller builds its losses inside
this scope itself.
"""
import inspect
from typing import Callable

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmdistill',
    locations=['mmdistill.distillers', 'mmdistill.losses'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmdistill', locations=['mmdistill.hooks'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmdistill',
    locations=['mmdistill.engine'])
# configs select ``runner_type = 'mmdistill.SafeRunner'``; OpenMMLab train scripts build it
RUNNERS = Registry(
    'runner', parent=MMENGINE_RUNNERS, scope='mmdistill', locations=['mmdistill.engine'])


def build_weight_schedule(cfg: dict, registry: Registry) -> Callable[[int, int], float]:
    """Build the weight schedule ``cfg['type']`` from the rest of ``cfg``, refusing an argument
    its class does not take, or a required one missing, with an error that names the schedule,
    those arguments and the ones it accepts."""
    if 'type' not in cfg:
        raise KeyError(f"a weight schedule config needs 'type', got {dict(cfg)}")
    args = dict(cfg)
    name = args.pop('type')
    cls = registry.get(name)
    if cls is None:
        raise KeyError(f"unknown weight schedule '{name}'; registered: "
                       f'{sorted(registry.module_dict)}')
    params = inspect.signature(cls).parameters.values()
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    accepted = [p.name for p in named]
    unknown = [arg for arg in args if arg not in accepted]
    if unknown and len(named) == len(params):  # no **kwargs to take them
        raise TypeError(f"the '{name}' weight schedule does not take {unknown}; it accepts "
                        f'{accepted}')
    missing = [p.name for p in named if p.default is p.empty and p.name not in args]
    if missing:
        raise TypeError(f"the '{name}' weight schedule needs {missing}; it accepts {accepted}")
    return cls(**args)


WEIGHT_SCHEDULES = Registry(
    'weight schedule', scope='mmdistill', build_func=build_weight_schedule,
    locations=['mmdistill.hooks'])
