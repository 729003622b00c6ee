"""Coloured shapes on a noisy background: what the synthetic datasets are drawn from.

Each class is one filled shape kind (rectangle or ellipse) in one colour. Shapes in an image
never overlap (a gap of at least one pixel), so every object's pixels are its own and its
box and area are exact.
"""
from typing import List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np

# name, RGB colour, shape kind. The colours are far apart so the classes are easy to learn.
CLASS_STYLES = (
    ('red_rectangle', (220, 40, 40), 'rectangle'),
    ('green_ellipse', (40, 200, 60), 'ellipse'),
    ('blue_rectangle', (50, 90, 230), 'rectangle'),
    ('yellow_ellipse', (230, 210, 40), 'ellipse'),
    ('magenta_rectangle', (210, 50, 200), 'rectangle'),
    ('cyan_ellipse', (40, 210, 220), 'ellipse'),
    ('orange_rectangle', (240, 140, 30), 'rectangle'),
    ('white_ellipse', (245, 245, 245), 'ellipse'),
)
_PLACEMENT_TRIES = 100


class Shape(NamedTuple):
    """One drawn object: its class index and the mask of its painted (visible) pixels."""
    label: int
    mask: np.ndarray  # H×W bool

    def box(self) -> Tuple[int, int, int, int]:
        """The tight box of the painted pixels, ``(x_min, y_min, x_max, y_max)`` inclusive."""
        rows, cols = np.nonzero(self.mask)
        return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def class_styles(num_classes: int) -> Tuple[Tuple[str, Tuple[int, int, int], str], ...]:
    """The (name, RGB colour, kind) of the first ``num_classes`` classes."""
    if not 1 <= num_classes <= len(CLASS_STYLES):
        raise ValueError(f'num_classes must be between 1 and {len(CLASS_STYLES)} (the shape '
                         f'styles defined in {__name__}.CLASS_STYLES), got {num_classes}')
    return CLASS_STYLES[:num_classes]


def noisy_background(rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """A dark grey H×W×3 RGB image with per-pixel noise."""
    height, width = size
    return rng.integers(20, 90, size=(height, width, 3), dtype=np.uint8)


def _draw(kind: str, box: Tuple[int, int, int, int], size: Tuple[int, int]) -> np.ndarray:
    """The H×W bool mask of a filled ``kind`` spanning ``box`` (may reach past the image)."""
    x0, y0, x1, y1 = box
    canvas = np.zeros(size, dtype=np.uint8)
    if kind == 'rectangle':
        cv2.rectangle(canvas, (x0, y0), (x1, y1), 1, thickness=-1)
    else:
        center = ((x0 + x1) // 2, (y0 + y1) // 2)
        axes = (max((x1 - x0) // 2, 1), max((y1 - y0) // 2, 1))
        cv2.ellipse(canvas, center, axes, 0, 0, 360, 1, thickness=-1)
    return canvas.astype(bool)


def _place(rng: np.random.Generator, kind: str, wh: Tuple[int, int], size: Tuple[int, int],
           taken: np.ndarray, cut_by_border: bool):
    """The mask of a ``kind`` of ``wh`` (w, h) at a random place where it keeps a one-pixel gap
    to the ``taken`` pixels, or None when that place is not free. With ``cut_by_border`` a third
    of it lies left of the image."""
    height, width = size
    w, h = wh
    x0 = -(w // 3) if cut_by_border else int(rng.integers(0, width - w + 1))
    y0 = int(rng.integers(0, height - h + 1))
    mask = _draw(kind, (x0, y0, x0 + w - 1, y0 + h - 1), size)
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return mask if mask.any() and not (grown & taken).any() else None


def _check_side_range(side_range: Tuple[int, int], size: Tuple[int, int]) -> None:
    low, high = side_range
    if not 2 <= low <= high <= min(size):
        raise ValueError(f'side_range {side_range} must satisfy 2 <= low <= high <= '
                         f'min(image size {size})')


def random_shapes(rng: np.random.Generator, size: Tuple[int, int], count: int,
                  num_classes: int, side_range: Tuple[int, int],
                  cut_by_border: bool = False) -> List[Shape]:
    """Up to ``count`` non-overlapping shapes of random classes, sides in ``side_range``.

    With ``cut_by_border`` the first shape is pushed partly out of the image through its left
    edge, so that its visible part touches the border (x_min = 0). Fewer than ``count``
    shapes are returned when no free place is found.
    """
    _check_side_range(side_range, size)
    low, high = side_range
    styles = class_styles(num_classes)
    taken = np.zeros(size, dtype=bool)
    shapes = []
    for index in range(count):
        label = int(rng.integers(num_classes))
        for _ in range(_PLACEMENT_TRIES):
            wh = tuple(int(v) for v in rng.integers(low, high + 1, size=2))
            mask = _place(rng, styles[label][2], wh, size, taken, cut_by_border and index == 0)
            if mask is not None:
                taken |= mask
                shapes.append(Shape(label, mask))
                break
    return shapes


def scale_spread_shapes(rng: np.random.Generator, size: Tuple[int, int], count: int,
                        num_classes: int, side_range: Tuple[int, int],
                        max_aspect: float = 2.0, cut_by_border: bool = False) -> List[Shape]:
    """Up to ``count`` non-overlapping shapes whose scales spread as on COCO.

    Each shape's scale ``s = sqrt(w * h)`` is log-uniform in ``side_range`` (as many shapes
    per octave of size) and its aspect ratio ``w / h`` log-uniform in
    ``[1 / max_aspect, max_aspect]``, so that ``w = s * sqrt(r)``, ``h = s / sqrt(r)`` (clipped
    to the image). The largest are placed first, so that big shapes are not crowded out by
    small ones placed before them; a shape with no free place is dropped.
    """
    _check_side_range(side_range, size)
    if max_aspect < 1:
        raise ValueError(f'max_aspect is w/h or h/w at most, so >= 1; got {max_aspect}')
    styles = class_styles(num_classes)
    scales = np.exp(rng.uniform(*np.log(side_range), size=count))
    ratios = np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect), size=count))
    labels = rng.integers(num_classes, size=count)
    taken = np.zeros(size, dtype=bool)
    shapes = []
    for index in np.argsort(-scales, kind='stable'):
        wh = (int(np.clip(round(scales[index] * np.sqrt(ratios[index])), 2, size[1])),
              int(np.clip(round(scales[index] / np.sqrt(ratios[index])), 2, size[0])))
        kind = styles[int(labels[index])][2]
        for _ in range(_PLACEMENT_TRIES):
            mask = _place(rng, kind, wh, size, taken, cut_by_border and not shapes)
            if mask is not None:
                taken |= mask
                shapes.append(Shape(int(labels[index]), mask))
                break
    return shapes


def paint(image: np.ndarray, shapes: Sequence[Shape], num_classes: int) -> np.ndarray:
    """Paint each shape in its class colour onto the RGB ``image`` (in place; also returned)."""
    styles = class_styles(num_classes)
    for shape in shapes:
        image[shape.mask] = styles[shape.label][1]
    return image


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write an RGB (H×W×3) or single-channel (H×W) uint8 array as a PNG file."""
    array = rgb[..., ::-1] if rgb.ndim == 3 else rgb  # OpenCV writes BGR
    if not cv2.imwrite(path, np.ascontiguousarray(array)):
        raise OSError(f'could not write {path}')
