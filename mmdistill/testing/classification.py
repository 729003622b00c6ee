"""A tiny image classification dataset of coloured shapes, in mmpretrain's folder layout."""
import os
import os.path as osp
from typing import Tuple

import numpy as np

from .shapes import class_styles, noisy_background, paint, random_shapes, write_png


def write_classification_dataset(root: str, num_train: int = 8, num_val: int = 4,
                                 size: Tuple[int, int] = (64, 64), seed: int = 0,
                                 num_classes: int = 3) -> dict:
    """Write one coloured shape per image, labelled by its class, under ``root``.

    Layout (what mmpretrain's ``CustomDataset`` reads with ``data_prefix='train'``: one folder
    per class, classes in sorted folder-name order)::

        root/{train,val}/<class name>/0000.png   RGB content, written by OpenCV

    Image ``i`` of a split shows class ``i % num_classes`` (``shapes.CLASS_STYLES``), a shape
    with sides between 1/4 and 3/4 of the image's shorter side. The same arguments always
    write the same files.

    Returns:
        ``dict(classes=(names in CustomDataset's order...))``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one image per split; got num_train={num_train}, '
                         f'num_val={num_val}')
    styles = class_styles(num_classes)
    rng = np.random.default_rng(seed)
    shorter = min(size)
    side_range = (max(shorter // 4, 2), max(3 * shorter // 4, 2))
    for split, count in (('train', num_train), ('val', num_val)):
        for name, _, _ in styles:
            os.makedirs(osp.join(root, split, name), exist_ok=True)
        for index in range(count):
            label = index % num_classes
            shapes = []
            while not shapes or shapes[0].label != label:
                shapes = random_shapes(rng, size, 1, num_classes, side_range)
            image = paint(noisy_background(rng, size), shapes, num_classes)
            write_png(osp.join(root, split, styles[label][0], f'{index:04d}.png'), image)
    return dict(classes=tuple(sorted(name for name, _, _ in styles)))
