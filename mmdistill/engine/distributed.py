"""Several training processes on machines without CUDA (gloo), through MMEngine's own Runner.

MMEngine 0.10.7 assumes GPUs in two places: its ``pytorch`` launcher calls
``torch.cuda.set_device`` before creating the process group, and the Runner wraps the model in
``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``, which torch refuses for a CPU module.
:func:`setup_distributed` covers both before the Runner is built: it creates the gloo process
group itself (the Runner then skips its own initialisation) and names
:class:`AnyDeviceDistributedDataParallel` as the model wrapper. On a CUDA machine it changes
nothing but the wrapper's name, and that wrapper then behaves as MMEngine's.
"""
import datetime
import logging
import math
import os
from numbers import Real
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm

from mmdistill.registry import MODEL_WRAPPERS

WRAPPER = 'mmdistill.AnyDeviceDistributedDataParallel'


@MODEL_WRAPPERS.register_module()
class AnyDeviceDistributedDataParallel(MMDistributedDataParallel):
    """MMEngine's ``MMDistributedDataParallel`` for a model on any device.

    On an accelerator it is MMEngine's wrapper, unchanged. For a model on the CPU it passes
    ``device_ids=None`` (the Runner passes ``[LOCAL_RANK]``, which torch accepts only for a
    single-device CUDA module) and turns ``SyncBatchNorm`` layers, which need GPUs, back into
    ``BatchNorm`` (each process then normalises its own batch, as in a single-process run);
    a log line says so.
    """

    def __init__(self, module: torch.nn.Module, **kwargs):
        device = next(module.parameters()).device
        if device.type == 'cpu':
            print_log(f'{type(self).__name__}: the model is on the CPU, so DDP gets '
                      'device_ids=None and SyncBatchNorm layers become BatchNorm (per-process '
                      'batch statistics)', logger='current')
            kwargs['device_ids'] = None
            module = revert_sync_batchnorm(module)
        super().__init__(module=module, **kwargs)


def process_group_timeout(cfg: Config) -> Optional[datetime.timedelta]:
    """``env_cfg.dist_cfg.timeout`` (seconds, as MMEngine reads it) as a ``timedelta``, or
    ``None`` when the config sets none (torch's default then: 30 minutes). A collective that
    waits longer for another rank (a frozen or dead process) fails with an error instead of
    hanging the job."""
    timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout')
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, Real) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ValueError(f'env_cfg.dist_cfg.timeout must be a number of seconds > 0, got '
                         f'{timeout!r}; e.g. env_cfg = dict(dist_cfg=dict(timeout=1800))')
    return datetime.timedelta(seconds=timeout)


def setup_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` (with ``cfg.launcher`` set) for the Runner in a multi-process run.

    Where CUDA is absent, this creates the gloo process group from torchrun's environment
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); only the ``pytorch`` launcher
    (``torchrun``) is supported there. Everywhere, it sets ``model_wrapper_cfg`` to
    :class:`AnyDeviceDistributedDataParallel` unless the config names a wrapper, with the
    arguments the Runner's default wrapper gets (``broadcast_buffers=False`` and the config's
    ``find_unused_parameters``). Does nothing for ``launcher='none'``.

    The process group's timeout is ``env_cfg.dist_cfg.timeout`` in seconds
    (:func:`process_group_timeout`), which MMEngine also passes to ``init_process_group``
    where it creates the group itself (CUDA).
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    timeout = process_group_timeout(cfg)
    if not torch.cuda.is_available() and not torch_dist.is_initialized():
        if launcher != 'pytorch':
            raise RuntimeError(
                f"launcher '{launcher}' needs CUDA here (MMEngine sets a CUDA device for it); "
                'without GPUs, start the processes with torchrun and --launcher pytorch, e.g. '
                'torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch')
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
                   if k not in os.environ]
        if missing:
            raise RuntimeError(f'--launcher pytorch needs {missing} in the environment: '
                               'start the processes with torchrun')
        torch_dist.init_process_group('gloo', **({} if timeout is None else {'timeout': timeout}))
        print_log(f'no CUDA: process group initialised with gloo, rank '
                  f'{torch_dist.get_rank()} of {torch_dist.get_world_size()}, timeout '
                  f'{"torch default" if timeout is None else f"{timeout.total_seconds():g} s"}',
                  logger='current', level=logging.INFO)
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type=WRAPPER, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
