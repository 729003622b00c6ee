from .checkpoint import load_full_checkpoint_from_local, register_full_checkpoint_loader

__all__ = ['load_full_checkpoint_from_local', 'register_full_checkpoint_loader']
