from .checkpoint import (ALLOWED_GLOBALS, CheckpointReadError, UnsafeCheckpointError,
                         load_checkpoint_file, safe_checkpoint_loading)
from .checkpoint_hook import SafeCheckpointHook, capture_rng_state, restore_rng_state
from .distributed import AnyDeviceDistributedDataParallel, setup_distributed
from .runner import (NothingToResumeError, SafeRunner, build_runner, runner_class,
                     train_with_safe_loading)

__all__ = ['ALLOWED_GLOBALS', 'CheckpointReadError', 'UnsafeCheckpointError',
           'load_checkpoint_file', 'safe_checkpoint_loading',
           'AnyDeviceDistributedDataParallel', 'setup_distributed', 'SafeCheckpointHook',
           'capture_rng_state', 'restore_rng_state', 'NothingToResumeError', 'SafeRunner',
           'build_runner', 'runner_class', 'train_with_safe_loading']
