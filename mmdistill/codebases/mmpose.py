"""mmpose: keypoint detection (top-down)."""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from .base import Codebase, SmokeData, register_codebase

CODEC_MAPPING_TABLES = ('field_mapping_table', 'instance_mapping_table',
                        'label_mapping_table')
# Datasets that read the generated COCO(-WholeBody) files as they are.
COCO_STYLE_TYPES = ('CocoDataset', 'CocoWholeBodyDataset', 'UBody2dDataset')


def data_sample(model: nn.Module, image: torch.Tensor, gen: torch.Generator):
    """Random keypoints, encoded by the head's own codec into the targets its loss reads."""
    from mmpose.datasets.transforms import PackPoseInputs
    height, width = image.shape[-2:]
    codec, num_keypoints = model.head.decoder, model.head.out_channels
    if tuple(codec.input_size) != (width, height):
        raise ValueError(f'the pose head expects {codec.input_size[1]}x{codec.input_size[0]} '
                         f'(HxW) inputs (its codec input_size), not {height}x{width}: pass '
                         f'--input-size {codec.input_size[1]} {codec.input_size[0]}')
    keypoints = (torch.rand(1, num_keypoints, 2, generator=gen) *
                 torch.tensor([width, height])).numpy()
    visible = np.ones((1, num_keypoints), dtype=np.float32)
    results = dict(img=image.permute(1, 2, 0).numpy(), keypoints=keypoints,
                   keypoints_visible=visible, bbox=np.array([[0, 0, width, height]], np.float32),
                   img_shape=(height, width), ori_shape=(height, width),
                   input_size=(width, height))
    # What mmpose's GenerateTarget does with one encoder: the targets, and where to pack them.
    results.update(codec.encode(keypoints, visible,
                                **{key: results.get(key) for key in codec.auxiliary_encode_keys}))
    results.update({table: getattr(codec, table) for table in CODEC_MAPPING_TABLES
                    if getattr(codec, table)})
    return PackPoseInputs()(results)['data_samples']


def smoke_data(root: str, num_train: int, num_val: int, size: Tuple[int, int],
               num_classes: Optional[int] = None) -> SmokeData:
    """A ``CocoDataset`` of stick figures with the 17 COCO body keypoints; a config's
    ``CocoWholeBodyDataset`` or ``UBody2dDataset`` reads the same files with their 133
    keypoints. Every figure is a person, the one class (``num_classes`` does not matter)."""
    from mmdistill.testing import write_coco_keypoints
    paths = write_coco_keypoints(root, num_train + num_val, size, num_val=num_val)
    return SmokeData.from_leaves(
        lambda split: dict(type='mmpose.CocoDataset', data_root=root,
                           ann_file=f'annotations/{split}.json',
                           data_prefix=dict(img='images/')),
        ann_file=paths['val'], kept_types=COCO_STYLE_TYPES)


MMPOSE = register_codebase(Codebase(
    scope='mmpose', package='mmpose', colour_flag='_channel_conversion',
    data_sample=data_sample, smoke_data=smoke_data))
