"""mmseg: semantic segmentation."""
from typing import Optional, Tuple

import torch
from torch import nn

from .base import Codebase, SmokeData, max_num_classes, register_codebase

SMOKE_CLASSES = 4


def data_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    """A random label map of the image's size."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    height, width = image.shape[-2:]
    sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
    sample.gt_sem_seg = PixelData(
        data=torch.randint(max_num_classes(model), (1, height, width), generator=gen))
    return sample


def smoke_data(root: str, num_train: int, num_val: int, size: Tuple[int, int],
               num_classes: Optional[int] = None) -> SmokeData:
    """A ``BaseSegDataset``: coloured shapes with their label maps, of at most
    :data:`SMOKE_CLASSES` classes with the background (and no more than ``num_classes``)."""
    from mmdistill.testing import write_seg_dataset
    metainfo = write_seg_dataset(root, num_train, num_val, size,
                                 num_classes=min(SMOKE_CLASSES, num_classes or SMOKE_CLASSES))
    return SmokeData.from_leaves(
        lambda split: dict(type='mmseg.BaseSegDataset', data_root=root, metainfo=metainfo,
                           data_prefix=dict(img_path=f'img_dir/{split}',
                                            seg_map_path=f'ann_dir/{split}'),
                           img_suffix='.png', seg_map_suffix='.png'))


MMSEG = register_codebase(Codebase(
    scope='mmseg', package='mmsegmentation', colour_flag='channel_conversion',
    data_sample=data_sample, smoke_data=smoke_data))
