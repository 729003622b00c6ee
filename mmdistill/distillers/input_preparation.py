"""Giving the teacher the inputs its own data preprocessor would have prepared.

The distiller feeds both models the batch that the student's data preprocessor prepared. The
four codebases' image preprocessors all prepare a batch the same way, per channel: reverse the
channel order (BGR <-> RGB) if asked, then ``(x - mean) / std`` if a mean is given. They name
the colour switch differently:

- ``_channel_conversion``: mmengine's ``ImgDataPreprocessor`` and its subclasses, mmdet's
  ``DetDataPreprocessor`` and mmpose's ``PoseDataPreprocessor``;
- ``channel_conversion``: mmseg's ``SegDataPreProcessor``;
- ``to_rgb``: mmpretrain's ``ClsDataPreprocessor``;

and all keep ``_enable_normalize`` and the ``mean``/``std`` buffers (C×1×1).

When the teacher's preparation differs from the student's, :func:`reprepare` undoes the
student's and applies the teacher's, exactly, pixel by pixel. What it does not redo: the
padding (padded pixels keep the student's pad value, mapped through the conversion) and the
input size (both models see the student's image size).
"""
from typing import NamedTuple, Optional

import torch
from torch import nn

COLOUR_FLAGS = ('_channel_conversion', 'channel_conversion', 'to_rgb')


class Preparation(NamedTuple):
    """What a data preprocessor does to each pixel: ``x = (P(pixel) - mean) / std`` where
    ``P`` reverses the channels when ``swaps_channels``; ``mean``/``std`` are ``None`` when it
    does not normalise."""
    swaps_channels: bool
    mean: Optional[torch.Tensor]
    std: Optional[torch.Tensor]

    def __str__(self) -> str:
        def values(t):
            return None if t is None else [round(v, 3) for v in t.flatten().tolist()]
        return (f'reverse channels={self.swaps_channels}, mean={values(self.mean)}, '
                f'std={values(self.std)}')


def preparation_of(preprocessor: nn.Module) -> Optional[Preparation]:
    """The :class:`Preparation` of an OpenMMLab image data preprocessor, ``None`` for one
    that has none of the known colour switches (not an image preprocessor we know)."""
    flags = [getattr(preprocessor, flag) for flag in COLOUR_FLAGS if hasattr(preprocessor, flag)]
    if not flags:
        return None
    if getattr(preprocessor, '_enable_normalize', False):
        return Preparation(bool(flags[0]), preprocessor.mean, preprocessor.std)
    return Preparation(bool(flags[0]), None, None)


def same_preparation(a: Preparation, b: Preparation) -> bool:
    """Whether two preparations give the same network input for every image."""

    def same(x, y):
        if x is None or y is None:
            return x is None and y is None
        return x.shape == y.shape and torch.equal(x.cpu(), y.cpu())

    return a.swaps_channels == b.swaps_channels and same(a.mean, b.mean) and same(a.std, b.std)


def reprepare(inputs: torch.Tensor, source: Preparation,
              target: Preparation) -> torch.Tensor:
    """Turn an N×C×H×W batch prepared by ``source`` into the batch ``target`` prepares:

    .. math::
        x_t = \\frac{R\\big(x_s \\sigma_s + \\mu_s\\big) - \\mu_t}{\\sigma_t}

    where :math:`R` reverses the channels when exactly one of the two reverses them (an
    absent mean is 0, an absent std 1).
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError(
            "the teacher's data preprocessor prepares images differently from the student's, "
            'and converting needs an N×C×H×W tensor batch, but the student\'s preprocessor '
            f'gave {type(inputs).__name__}'
            f'{tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else ""}. Give the '
            'teacher the same data_preprocessor settings through teacher.cfg_options.')
    pixels = inputs
    if source.mean is not None:
        pixels = pixels * source.std + source.mean
    if source.swaps_channels != target.swaps_channels:
        pixels = pixels.flip(1)
    if target.mean is not None:
        pixels = (pixels - target.mean) / target.std
    return pixels
