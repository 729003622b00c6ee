"""mmdet: object detection and instance segmentation."""
import os.path as osp
from typing import Optional, Tuple

import torch
from torch import nn

from .base import Codebase, SmokeData, max_num_classes, register_codebase

BOXES_PER_IMAGE = 3
SMOKE_CLASSES = 3


def box_masks(boxes: torch.Tensor, height: int, width: int):
    """Instance masks filling each box, for detectors with mask heads (Mask R-CNN, SOLO)."""
    from mmdet.structures.mask import BitmapMasks
    rows = torch.arange(height).view(1, -1, 1)
    cols = torch.arange(width).view(1, 1, -1)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    masks = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return BitmapMasks(masks.numpy().astype('uint8'), height, width)


def data_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    """:data:`BOXES_PER_IMAGE` random boxes inside the image, their labels and masks."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    height, width = image.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    centre = 0.2 + 0.6 * torch.rand(BOXES_PER_IMAGE, 2, generator=gen)
    half_size = 0.05 + 0.15 * torch.rand(BOXES_PER_IMAGE, 2, generator=gen)
    boxes = torch.cat([centre - half_size, centre + half_size], dim=1) * scale
    labels = torch.randint(max_num_classes(model), (BOXES_PER_IMAGE, ), generator=gen)
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=boxes, labels=labels,
                                       masks=box_masks(boxes, height, width))
    return sample


def smoke_data(root: str, num_train: int, num_val: int, size: Tuple[int, int],
               num_classes: Optional[int] = None) -> SmokeData:
    """A ``CocoDataset``: coloured shapes of at most :data:`SMOKE_CLASSES` classes with their
    boxes; COCO metrics read ``val.json``, whose categories are as many as the model's
    ``num_classes``, so that every label an untrained 80-class detector predicts has one."""
    from mmdistill.testing import write_coco_detection
    drawn = min(SMOKE_CLASSES, num_classes or SMOKE_CLASSES)
    metainfo = write_coco_detection(root, num_train + num_val, size, num_classes=drawn,
                                    num_val=num_val,
                                    num_categories=max(drawn, num_classes or drawn))
    return SmokeData.from_leaves(
        lambda split: dict(type='mmdet.CocoDataset', data_root=root, metainfo=metainfo,
                           ann_file=f'annotations/{split}.json',
                           data_prefix=dict(img='images/'),
                           filter_cfg=dict(filter_empty_gt=False)),
        ann_file=osp.join(root, 'annotations', 'val.json'))


MMDET = register_codebase(Codebase(
    scope='mmdet', package='mmdet', colour_flag='_channel_conversion', data_sample=data_sample,
    smoke_data=smoke_data, model_aliases=('detector', )))
