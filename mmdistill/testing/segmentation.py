"""A tiny semantic segmentation dataset of coloured shapes, in mmseg's folder layout."""
import os
import os.path as osp
from typing import Tuple

import cv2
import numpy as np

from .shapes import class_styles, noisy_background, paint, random_shapes, write_png

IGNORE_INDEX = 255
BACKGROUND_COLOUR = (0, 0, 0)


def write_seg_dataset(root: str, num_train: int = 8, num_val: int = 4,
                      size: Tuple[int, int] = (64, 64), seed: int = 0, num_classes: int = 4,
                      max_objects: int = 3) -> dict:
    """Write coloured shapes on noise as a semantic segmentation dataset under ``root``.

    Layout (what mmseg's ``BaseSegDataset`` reads with ``img_suffix='.png'``,
    ``seg_map_suffix='.png'``)::

        root/img_dir/{train,val}/0000.png   RGB content, written by OpenCV
        root/ann_dir/{train,val}/0000.png   one channel: the class id of each pixel

    Class 0 is ``background``; classes 1..num_classes-1 are shapes, each one kind in one
    colour (``shapes.CLASS_STYLES``). Every image holds 1 to ``max_objects`` non-overlapping
    shapes with sides between 1/8 and 1/2 of the image's shorter side. As in Pascal VOC, the
    one-pixel outline of each shape is labelled 255 (ignored by the losses and ``IoUMetric``),
    so every label map has an ignore region. The first training image's first shape is cut by
    the left border. The same arguments always write the same files.

    Args:
        root: the folder to write into (created if needed).
        num_train: images in the training split.
        num_val: images in the validation split.
        size: (H, W) of every image.
        seed: seed of the random generator that places, sizes and labels the shapes.
        num_classes: number of classes, background included (2 to
            ``len(shapes.CLASS_STYLES) + 1``).
        max_objects: the most objects an image holds.

    Returns:
        The metainfo for the datasets' ``metainfo=``: ``dict(classes=('background', ...),
        palette=[RGB...])``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one image per split; got num_train={num_train}, '
                         f'num_val={num_val}')
    if num_classes < 2:
        raise ValueError(f'num_classes counts the background and needs at least one shape '
                         f'class: it must be at least 2, got {num_classes}')
    if max_objects < 1:
        raise ValueError(f'max_objects must be at least 1, got {max_objects}')
    styles = class_styles(num_classes - 1)
    rng = np.random.default_rng(seed)
    shorter = min(size)
    side_range = (max(shorter // 8, 2), max(shorter // 2, 2))
    kernel = np.ones((3, 3), np.uint8)
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(root, 'img_dir', split), exist_ok=True)
        os.makedirs(osp.join(root, 'ann_dir', split), exist_ok=True)
        for index in range(count):
            shapes = random_shapes(rng, size, int(rng.integers(1, max_objects + 1)),
                                   num_classes - 1, side_range,
                                   cut_by_border=split == 'train' and index == 0)
            image = paint(noisy_background(rng, size), shapes, num_classes - 1)
            labels = np.zeros(size, dtype=np.uint8)
            for shape in shapes:
                labels[shape.mask] = shape.label + 1
                inner = cv2.erode(shape.mask.astype(np.uint8), kernel,
                                  borderType=cv2.BORDER_REPLICATE).astype(bool)
                labels[shape.mask & ~inner] = IGNORE_INDEX
            write_png(osp.join(root, 'img_dir', split, f'{index:04d}.png'), image)
            write_png(osp.join(root, 'ann_dir', split, f'{index:04d}.png'), labels)
    return dict(classes=('background', ) + tuple(name for name, _, _ in styles),
                palette=[BACKGROUND_COLOUR] + [colour for _, colour, _ in styles])
