"""What FGD sees on each FPN level of one image, as a grid of heat maps.

The maps come from the distiller's own parts: its module taps record the student and teacher
features, and the FGD loss's own functions (:mod:`mmdistill.losses.box_masks`,
:func:`~mmdistill.losses.fgd_loss.fgd_attention`, its align layer) turn them into masks,
attention and differences, so the picture shows exactly what the loss weighs.
"""
from typing import List, NamedTuple, Sequence

import cv2
import numpy as np
import torch

from mmdistill.losses.box_masks import background_masks, boxes_and_shapes, foreground_masks
from mmdistill.losses.fgd_loss import FGDLoss, fgd_attention

PANEL_TITLES = ('image + GT boxes', 'foreground mask', 'background mask',
                'teacher attention', 'feature diff^2')
HEADER_HEIGHT = 20  # pixels of the title strip above the panels
BOX_COLOUR = (0, 255, 0)  # BGR
TEXT_COLOUR = (255, 255, 255)


class FGDLevelMaps(NamedTuple):
    """FGD's maps on one feature level for the first image of a batch, each H×W (feature
    cells): foreground mask M, background mask B, the teacher's spatial attention A_S^t and the
    channel mean of (align(F^s) − F^t)²."""
    name: str
    foreground: np.ndarray
    background: np.ndarray
    attention: np.ndarray
    difference: np.ndarray


def fgd_level_maps(distiller, inputs: torch.Tensor, data_samples: Sequence) -> List[FGDLevelMaps]:
    """Run the teacher and the student on a preprocessed batch and compute, for each
    :class:`~mmdistill.losses.FGDLoss` of ``distiller``, its maps for the first image.

    Args:
        distiller: an :class:`~mmdistill.Distiller` with a teacher and FGD losses.
        inputs: the batch as the data preprocessor returns it (N×3×H×W).
        data_samples: the preprocessed mmdet data samples, with ``gt_instances.bboxes`` and
            the ``img_shape`` and ``batch_input_shape`` metainfo.
    """
    names = [name for name, loss in distiller.distill_losses.items() if isinstance(loss, FGDLoss)]
    if not names:
        raise ValueError('the config has no FGDLoss among its distill_losses '
                         f'({list(distiller.distill_losses)}): pass an FGD config.')
    if not distiller.teachers:
        raise ValueError('FGD needs a teacher, and this distiller has none (teacher=None).')
    distiller.eval()
    with torch.no_grad():
        records = distiller.teacher_forward(inputs, data_samples)
        records.update(distiller.student_taps.record(
            lambda: distiller.student(inputs, data_samples, mode='tensor')))
        return [_level_maps(name, distiller.distill_losses[name],
                            records[distiller.loss_inputs[name]['student_feature']],
                            records[distiller.loss_inputs[name]['teacher_feature']],
                            data_samples) for name in names]


def _level_maps(name: str, loss: FGDLoss, student: torch.Tensor, teacher: torch.Tensor,
                data_samples: Sequence) -> FGDLevelMaps:
    if not (isinstance(student, torch.Tensor) and isinstance(teacher, torch.Tensor)):
        raise ValueError(f"FGD loss '{name}' taps a module called several times per forward "
                         'pass; tap one feature level per loss.')
    aligned = loss.align(student)
    boxes, image_shapes, batch_shapes = boxes_and_shapes(data_samples, teacher.device)
    foreground = foreground_masks(boxes, image_shapes, batch_shapes, teacher.shape[-2:])
    spatial, _ = fgd_attention(teacher, loss.temp)
    maps = (foreground, background_masks(foreground), spatial,
            ((aligned - teacher)**2).mean(dim=1))
    return FGDLevelMaps(name, *(m[0].float().cpu().numpy() for m in maps))


def heat_map(values: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """An H×W map of non-negative values as an ``size`` (H, W) BGR image: scaled by its own
    maximum (black is 0, the brightest colour the map's maximum), nearest-neighbour resized so
    that each feature cell stays a sharp block, inferno colours (brightness grows with value)."""
    peak = float(values.max())
    scaled = values / peak if peak > 0 else np.zeros_like(values)
    grey = np.round(scaled * 255).astype(np.uint8)
    grey = cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)


def draw_fgd_grid(image: np.ndarray, boxes: np.ndarray, levels: Sequence[FGDLevelMaps]
                  ) -> np.ndarray:
    """The grid: a title strip (:data:`HEADER_HEIGHT` px), then one row per level with the
    panels of :data:`PANEL_TITLES`, each of the image's size.

    Args:
        image: H×W×3 uint8 BGR, the batch input the features cover (padding included).
        boxes: K×4 ground-truth boxes ``(x1, y1, x2, y2)`` in pixels of ``image``.
        levels: the maps of each level (:func:`fgd_level_maps`).
    """
    height, width = image.shape[:2]
    rows = []
    for level in levels:
        picture = image.copy()
        for x1, y1, x2, y2 in np.round(boxes).astype(int):
            cv2.rectangle(picture, (x1, y1), (x2, y2), BOX_COLOUR, 1)
        cells = level.foreground.shape
        _put_text(picture, f'{level.name} {cells[0]}x{cells[1]}', 12)
        maps = (level.foreground, level.background, level.attention, level.difference)
        rows.append(np.concatenate(
            [picture] + [heat_map(m, (height, width)) for m in maps], axis=1))
    header = np.zeros((HEADER_HEIGHT, width * len(PANEL_TITLES), 3), np.uint8)
    for column, title in enumerate(PANEL_TITLES):
        _put_text(header, title, HEADER_HEIGHT - 6, x=column * width)
    return np.concatenate([header] + rows, axis=0)


def _put_text(canvas: np.ndarray, text: str, baseline: int, x: int = 0) -> None:
    cv2.putText(canvas, text, (x + 3, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.35, TEXT_COLOUR,
                1, cv2.LINE_AA)
