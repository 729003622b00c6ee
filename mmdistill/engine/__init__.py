from .checkpoint import (ALLOWED_GLOBALS, CheckpointReadError, UnsafeCheckpointError,
                         load_checkpoint_file, safe_checkpoint_loading)
from .distributed import AnyDeviceDistributedDataParallel, setup_distributed

__all__ = ['ALLOWED_GLOBALS', 'CheckpointReadError', 'UnsafeCheckpointError',
           'load_checkpoint_file', 'safe_checkpoint_loading',
           'AnyDeviceDistributedDataParallel', 'setup_distributed']
