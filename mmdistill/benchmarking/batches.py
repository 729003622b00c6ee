"""The batch a benchmark times: synthetic, as the student codebase's dataloader yields it, or
the first of the config's own training data."""
import copy
from typing import Tuple

import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch import nn

from mmdistill.codebases import get_codebase


def synthetic_batch(model: nn.Module, scope: str, batch_size: int,
                    input_size: Tuple[int, int], seed: int = 0) -> dict:
    """A batch as the ``scope`` codebase's dataloader yields it: random uint8 images of
    ``input_size`` (H, W) and data samples with what the model's loss reads, drawn by the
    codebase's ``data_sample`` (:mod:`mmdistill.codebases`: class labels; boxes and labels; a
    label map; keypoints encoded by the head's codec)."""
    codebase = get_codebase(scope, "use the config's own data (data='train', --data train)")
    # Batch augments such as YOLOX's random resize read the iteration a Runner would set.
    message_hub = MessageHub.get_current_instance()
    if message_hub.get_info('iter') is None:
        message_hub.update_info('iter', 0)
    gen = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, *input_size), generator=gen, dtype=torch.uint8)
              for _ in range(batch_size)]
    return dict(inputs=images,
                data_samples=[codebase.data_sample(model, image, gen) for image in images])


def train_batch(cfg, batch_size: int, seed: int = 0) -> dict:
    """The first batch of the config's own ``train_dataloader`` (its data must exist)."""
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return next(iter(Runner.build_dataloader(loader_cfg, seed=seed)))
