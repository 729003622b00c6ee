from .checkpoint import load_full_checkpoint_from_local, register_full_checkpoint_loader
from .checkpoint_hook import SafeCheckpointHook, capture_rng_state, restore_rng_state
from .distributed import AnyDeviceDistributedDataParallel, setup_distributed
from .runner import NothingToResumeError, SafeRunner

__all__ = ['load_full_checkpoint_from_local', 'register_full_checkpoint_loader',
           'AnyDeviceDistributedDataParallel', 'setup_distributed', 'SafeCheckpointHook',
           'capture_rng_state', 'restore_rng_state', 'NothingToResumeError', 'SafeRunner']
