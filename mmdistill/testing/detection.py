"""A tiny COCO-format detection dataset of coloured shapes, for tests and small runs."""
import json
import os
import os.path as osp
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .shapes import (class_styles, noisy_background, paint, random_shapes, scale_spread_shapes,
                     write_png)

EMPTY_COLOUR = (128, 128, 128)  # palette entry of a listed category that holds no object


def _polygons(shape) -> List[List[int]]:
    """COCO's ``segmentation`` of a shape: the outlines of its painted pixels as flat
    ``[x1, y1, x2, y2, ...]`` polygons (its box where no outline has three points)."""
    contours, _ = cv2.findContours(shape.mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = [contour.reshape(-1).tolist() for contour in contours if len(contour) >= 3]
    x0, y0, x1, y1 = shape.box()
    return polygons or [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _annotations(shapes, image_id: int, first_id: int) -> List[dict]:
    annotations = []
    for offset, shape in enumerate(shapes):
        x0, y0, x1, y1 = shape.box()
        annotations.append(dict(
            id=first_id + offset, image_id=image_id, category_id=shape.label + 1,
            bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1], area=int(shape.mask.sum()), iscrowd=0,
            segmentation=_polygons(shape)))
    return annotations


def write_coco_detection(root: str, num_images: int = 12, size: Tuple[int, int] = (128, 128),
                         seed: int = 0, num_classes: int = 3, num_val: int = 4,
                         max_objects: int = 3,
                         scale_spread: Optional[Tuple[int, int]] = None,
                         num_categories: Optional[int] = None) -> dict:
    """Write coloured shapes on noise as a COCO detection dataset under ``root``.

    Layout (what mmdet's ``CocoDataset`` and ``CocoMetric`` read)::

        root/images/0000.png ...          RGB content, written by OpenCV
        root/annotations/train.json       the first num_images - num_val images
        root/annotations/val.json         the last num_val images

    Each class is one shape kind in one colour (``shapes.CLASS_STYLES``); an image holds 1 to
    ``max_objects`` non-overlapping shapes with sides between 1/8 and 1/3 of the image's
    shorter side. Two training images hold the cases detectors and box-based distillation
    losses must survive: image 0 has no object at all, and image 1's first object is cut by
    the left border (its box starts at x = 0). Boxes are the tight boxes of the painted
    pixels in COCO's ``[x, y, w, h]`` (``w = x_max - x_min + 1``), ``area`` the number of
    painted pixels, ``segmentation`` the outline polygons of those pixels (for instance
    segmentation: Mask R-CNN, SOLO), ``iscrowd`` 0; category ids are 1..num_classes. The same
    arguments always write the same files.

    Args:
        root: the folder to write into (created if needed).
        num_images: images in all, train and validation.
        size: (H, W) of every image.
        seed: seed of the random generator that places, sizes and labels the shapes.
        num_classes: number of classes (at most ``len(shapes.CLASS_STYLES)``).
        num_val: images in the validation split (the last ones).
        max_objects: the most objects an image holds.
        scale_spread: ``(low, high)`` object scales in pixels, log-uniform; None for the
            default uniform sides.
        num_categories: the categories listed in the annotation files and the metainfo
            (default ``num_classes``); those beyond ``num_classes``, named ``class_<id>``, hold
            no object: for a model that predicts more classes than are drawn (COCO's metric
            maps each predicted label to a category).

    Returns:
        The metainfo for the datasets' ``metainfo=``: ``dict(classes=(names...),
        palette=[RGB...])``.
    """
    if num_val < 1 or num_images - num_val < 2:
        raise ValueError(f'need num_val >= 1 and at least 2 training images (the empty and '
                         f'the border-cut one); got num_images={num_images}, num_val={num_val}')
    if max_objects < 1:
        raise ValueError(f'max_objects must be at least 1, got {max_objects}')
    styles = class_styles(num_classes)
    rng = np.random.default_rng(seed)
    shorter = min(size)
    side_range = (max(shorter // 8, 2), max(shorter // 3, 2))
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)

    splits = {'train': ([], []), 'val': ([], [])}
    next_annotation_id = 1
    for index in range(num_images):
        count = 0 if index == 0 else int(rng.integers(1, max_objects + 1))
        if scale_spread is None:
            shapes = random_shapes(rng, size, count, num_classes, side_range,
                                   cut_by_border=index == 1)
        else:
            shapes = scale_spread_shapes(rng, size, count, num_classes, scale_spread,
                                         cut_by_border=index == 1)
        image = paint(noisy_background(rng, size), shapes, num_classes)
        file_name = f'{index:04d}.png'
        write_png(osp.join(root, 'images', file_name), image)
        image_id = index + 1
        images, annotations = splits['train' if index < num_images - num_val else 'val']
        images.append(dict(id=image_id, file_name=file_name, height=size[0], width=size[1]))
        annotations.extend(_annotations(shapes, image_id, next_annotation_id))
        next_annotation_id += len(shapes)

    names = [name for name, _, _ in styles] + [
        f'class_{i + 1}' for i in range(num_classes, num_categories or num_classes)]
    palette = [colour for _, colour, _ in styles] + [EMPTY_COLOUR] * (len(names) - num_classes)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(names)]
    for split, (images, annotations) in splits.items():
        with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
            json.dump(dict(info=dict(description=f'mmdistill synthetic shapes, seed {seed}'),
                           licenses=[], images=images, annotations=annotations,
                           categories=categories), f)
    return dict(classes=tuple(names), palette=palette)
