"""Resuming MMEngine 0.10.7 checkpoints on torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default; an MMEngine checkpoint holds
Python objects besides tensors (the message hub's ``HistoryBuffer``, numpy values, the config
text), so ``Runner(resume=True)`` fails with ``UnpicklingError: Weights only load failed``
(fixed only on MMEngine's unreleased main). Importing mmdistill re-registers MMEngine's loader
for local files through its own extension point (``CheckpointLoader.register_scheme``) so that
it loads full checkpoints again. Checkpoints are trusted input here, as they were for MMEngine
before torch 2.6: load only files you or a source you trust wrote.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def load_full_checkpoint_from_local(filename: str, map_location=None):
    """Load a local checkpoint file with everything MMEngine put in it."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def register_full_checkpoint_loader() -> None:
    """Make MMEngine's local checkpoint loading (resume, load_from, teachers) work on torch>=2.6."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_full_checkpoint_from_local,
                                     force=True)
