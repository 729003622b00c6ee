"""mmpretrain: image classification."""
from typing import Optional, Tuple

import torch
from torch import nn

from .base import Codebase, SmokeData, max_num_classes, register_codebase

SMOKE_CLASSES = 3


def data_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    """A random class label."""
    from mmpretrain.structures import DataSample
    label = int(torch.randint(max_num_classes(model), (1, ), generator=gen))
    return DataSample().set_gt_label(label)


def smoke_data(root: str, num_train: int, num_val: int, size: Tuple[int, int],
               num_classes: Optional[int] = None) -> SmokeData:
    """A ``CustomDataset`` (one folder per class), one coloured shape per image, of at most
    :data:`SMOKE_CLASSES` classes (and no more than ``num_classes``)."""
    from mmdistill.testing import write_classification_dataset
    write_classification_dataset(root, num_train, num_val, size,
                                 num_classes=min(SMOKE_CLASSES, num_classes or SMOKE_CLASSES))
    return SmokeData.from_leaves(
        lambda split: dict(type='mmpretrain.CustomDataset', data_root=root, data_prefix=split))


MMPRETRAIN = register_codebase(Codebase(
    scope='mmpretrain', package='mmpretrain', colour_flag='to_rgb', data_sample=data_sample,
    smoke_data=smoke_data))
