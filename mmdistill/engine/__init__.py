from .checkpoint import load_full_checkpoint_from_local, register_full_checkpoint_loader
from .distributed import AnyDeviceDistributedDataParallel, setup_distributed

__all__ = ['load_full_checkpoint_from_local', 'register_full_checkpoint_loader',
           'AnyDeviceDistributedDataParallel', 'setup_distributed']
