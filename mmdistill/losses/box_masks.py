"""FGD's foreground and background masks: ground-truth boxes drawn on one feature level.

A box ``(x1, y1, x2, y2)`` in pixels of the batch input is clipped to its image, scaled to the
feature map by ``H / batch_input_h`` and ``W / batch_input_w`` (the padded batch is what the
feature map covers), and lights the cells from the floor of its min corner to the ceil of its
max corner, both included (the reference's rule: feature cell ``i`` sits at ``i · stride``, as
mmdet's anchor points do), clamped to the map. Rows are y, columns are x.

The boxes are drawn without a loop over them: each box becomes a row band times a column band,
and each image keeps the per-cell maximum over its boxes (a loop over the images only). That
is cheaper than painting the boxes one by one in a Python loop, the reference's form
(``tools/analysis/benchmark_fgd_masks.py`` measures both).
"""
from typing import List, Sequence, Tuple

import torch
from torch import Tensor


def box_cell_ranges(boxes: Tensor, image_shapes: Tensor, batch_shapes: Tensor,
                    feature_shape: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    """The cells each box lights on an ``H×W`` feature map.

    Args:
        boxes: B×4 boxes ``(x1, y1, x2, y2)`` in pixels of the batch input.
        image_shapes: B×2 ``(h, w)`` of each box's image (its ``img_shape``): boxes are clipped
            to it, so the part of a box outside its image (or in the padding) lights nothing.
        batch_shapes: B×2 ``(h, w)`` of the padded batch input the feature map covers.
        feature_shape: ``(H, W)``.

    Returns:
        ``rows`` and ``cols`` (B×2 long, first and last index, both included) and ``valid``
        (B bool): ``False`` for boxes of zero width or height once clipped, which light nothing.
    """
    height, width = feature_shape
    boxes = boxes.to(image_shapes.dtype)
    x = torch.minimum(boxes[:, 0::2].clamp(min=0), image_shapes[:, 1:2])
    y = torch.minimum(boxes[:, 1::2].clamp(min=0), image_shapes[:, 0:1])
    valid = (x[:, 1] > x[:, 0]) & (y[:, 1] > y[:, 0])
    x = x * width / batch_shapes[:, 1:2]  # product first: exact on cell borders
    y = y * height / batch_shapes[:, 0:1]
    cols = torch.stack([x[:, 0].floor(), x[:, 1].ceil()], dim=1).clamp(0, width - 1).long()
    rows = torch.stack([y[:, 0].floor(), y[:, 1].ceil()], dim=1).clamp(0, height - 1).long()
    return rows, cols, valid


def foreground_masks(boxes: Sequence[Tensor], image_shapes: Tensor, batch_shapes: Tensor,
                     feature_shape: Tuple[int, int]) -> Tensor:
    """FGD's foreground mask ``M`` (N×H×W): at each cell, the largest ``1/(h·w)`` of the boxes
    of that image covering it, ``h·w`` being the number of cells the box lights; 0 elsewhere.

    Args:
        boxes: one K_n×4 tensor of boxes ``(x1, y1, x2, y2)`` per image (K_n may be 0).
        image_shapes: N×2 ``(h, w)`` of each image (``img_shape``), float.
        batch_shapes: N×2 ``(h, w)`` of the padded batch input (``batch_input_shape``), float.
        feature_shape: ``(H, W)`` of the feature map.
    """
    height, width = feature_shape
    device = image_shapes.device
    masks = image_shapes.new_zeros(len(boxes), height, width)
    counts = [len(image_boxes) for image_boxes in boxes]
    if sum(counts) == 0:
        return masks
    all_boxes = torch.cat([image_boxes.reshape(-1, 4) for image_boxes in boxes]).to(device)
    repeats = torch.tensor(counts, device=device)
    per_box = dict(repeats=repeats, dim=0, output_size=len(all_boxes))  # no device sync
    rows, cols, valid = box_cell_ranges(all_boxes, image_shapes.repeat_interleave(**per_box),
                                        batch_shapes.repeat_interleave(**per_box),
                                        feature_shape)
    cells = (rows[:, 1] - rows[:, 0] + 1) * (cols[:, 1] - cols[:, 0] + 1)
    weight = valid.to(masks.dtype) / cells
    in_rows = _band(rows, height).to(masks.dtype) * weight[:, None]  # B×H
    in_cols = _band(cols, width).to(masks.dtype)  # B×W
    # One image at a time: its K×H×W box maps stay small enough for the caches.
    start = 0
    for image, count in enumerate(counts):
        if count:
            end = start + count
            masks[image] = (in_rows[start:end, :, None] * in_cols[start:end, None, :]).amax(0)
            start = end
    return masks


def _band(ranges: Tensor, size: int) -> Tensor:
    """B×size bool: which of ``0..size-1`` lie in each inclusive range ``ranges[b]``."""
    index = torch.arange(size, device=ranges.device)
    return (index >= ranges[:, :1]) & (index <= ranges[:, 1:])


def background_masks(foreground: Tensor) -> Tensor:
    """FGD's background mask: 1 where the foreground mask is 0, divided by its sum per image
    (all zeros for an image whose boxes cover the whole map)."""
    background = (foreground == 0).to(foreground.dtype)
    return background / background.sum(dim=(1, 2), keepdim=True).clamp(min=1)


def _metainfo_shape(sample, key: str, index: int) -> Tuple[int, int]:
    shape = sample.metainfo.get(key)
    if shape is None:
        raise ValueError(
            f"data sample {index} has no '{key}' in its metainfo; FGD needs 'img_shape' and "
            "'batch_input_shape', which mmdet's DetDataPreprocessor sets: pass the data "
            'samples as the preprocessor returns them.')
    return tuple(shape[:2])


def boxes_and_shapes(data_samples: Sequence, device: torch.device
                     ) -> Tuple[List[Tensor], Tensor, Tensor]:
    """Ground-truth boxes (``gt_instances.bboxes``, tensors or mmdet box objects) and the
    ``img_shape``/``batch_input_shape`` of each image of mmdet data samples, on ``device``."""
    if not data_samples:
        raise ValueError('FGD needs the batch\'s data samples (mmdet DetDataSample with '
                         'gt_instances.bboxes); got none. Call it with data_samples=... or '
                         'through mmdistill.Distiller, which passes them.')
    boxes, image_shapes, batch_shapes = [], [], []
    for index, sample in enumerate(data_samples):
        instances = getattr(sample, 'gt_instances', None)
        if instances is None or 'bboxes' not in instances:
            raise ValueError(f'data sample {index} has no gt_instances.bboxes: FGD draws its '
                             'masks from ground-truth boxes (mmdet DetDataSample).')
        bboxes = instances.bboxes
        boxes.append(getattr(bboxes, 'tensor', bboxes))  # mmdet's HorizontalBoxes or a tensor
        image_shapes.append(_metainfo_shape(sample, 'img_shape', index))
        batch_shapes.append(_metainfo_shape(sample, 'batch_input_shape', index))
    return (boxes, torch.tensor(image_shapes, dtype=torch.float32, device=device),
            torch.tensor(batch_shapes, dtype=torch.float32, device=device))
