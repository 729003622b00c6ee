"""Giving a teacher the inputs its own data preprocessor would have prepared.

The distiller's data preprocessor is the student's: it prepares one batch, which the student
sees as it is. The codebases' image preprocessors all prepare a batch the same way, per
channel: reverse the channel order (BGR <-> RGB) if asked, then ``(x - mean) / std`` if a mean
is given. They name the colour switch differently (``_channel_conversion`` in mmengine's
``ImgDataPreprocessor`` and its subclasses; each codebase's name is its ``colour_flag`` in
:mod:`mmdistill.codebases`: ``channel_conversion`` for mmseg, ``to_rgb`` for mmpretrain), and
all keep ``_enable_normalize`` and the ``mean``/``std`` buffers (C×1×1).

Each teacher says what it gets with ``inputs`` (:class:`TeacherInputs`):

- ``'own'``: the batch as its own preprocessor prepares it: :func:`reprepare` undoes the
  student's colour order, mean and std and applies the teacher's, exactly, pixel by pixel; with
  ``input_size=(H, W)`` the batch is then resized (bilinear) to the teacher's input size. Both
  preprocessors must be image preprocessors that can be read (and so inverted), or building
  fails.
- ``'student'``: the student's batch exactly as it is.
- ``'auto'`` (the default, as before ``inputs`` existed): ``'own'`` without a resize when both
  preprocessors can be read and differ (a warning says so), else ``'student'`` (a warning says
  when one cannot be read).

Padding is never redone: padded pixels keep the student's pad value, mapped through the
conversion (and resized with the rest of the batch).
"""
import logging
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmdistill.codebases import CODEBASES

INPUT_MODES = ('auto', 'own', 'student')

# mmengine's ImgDataPreprocessor's own colour switch first, then those of the codebases.
COLOUR_FLAGS = tuple(dict.fromkeys(
    ['_channel_conversion', *(codebase.colour_flag for codebase in CODEBASES.values())]))


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


def resize(inputs: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize an N×C×H×W batch to ``size`` (H, W): bilinear, ``align_corners=False``. Being
    linear with weights that sum to 1, it commutes with the per-channel ``(x - mean) / std``."""
    if tuple(inputs.shape[-2:]) == tuple(size):
        return inputs
    return F.interpolate(inputs, size=tuple(size), mode='bilinear', align_corners=False)


class TeacherInputs:
    """What one teacher gets from the student's prepared batch (see the module's docstring).

    Args:
        mode: ``'own'``, ``'student'`` or ``'auto'``.
        input_size: ``(H, W)`` the teacher's inputs are resized to; only with ``'own'``.
        student: the student's (the distiller's) data preprocessor.
        teacher: the teacher's data preprocessor.
        owner: the teacher's name in messages (``teacher``, ``teachers.det``).
    """

    def __init__(self, mode: str, input_size: Optional[Sequence[int]], student: nn.Module,
                 teacher: nn.Module, owner: str):
        if mode not in INPUT_MODES:
            raise ValueError(f"{owner}.inputs must be one of {INPUT_MODES}, got {mode!r}")
        if input_size is not None and (mode != 'own' or len(input_size) != 2):
            raise ValueError(f'{owner}.input_size={input_size!r} needs inputs=\'own\' and two '
                             "numbers (H, W): the teacher's batch is resized only when it gets "
                             'its own inputs.')
        self.size = None if input_size is None else tuple(int(n) for n in input_size)
        # The preprocessors, not their Preparation: device moves replace the mean/std buffers.
        self.student, self.teacher = student, teacher
        mine, theirs = preparation_of(student), preparation_of(teacher)
        unknown = [type(pre).__name__ for pre, prep in ((student, mine), (teacher, theirs))
                   if prep is None]
        if mode == 'own' and unknown:
            raise ValueError(
                f"{owner}.inputs='own' needs to undo the student's image preparation and apply "
                f"the teacher's, but {' and '.join(unknown)} is not an image data preprocessor "
                'whose colour order, mean and std can be read (and inverted): mmengine\'s '
                f'ImgDataPreprocessor and those of {", ".join(CODEBASES)} can. '
                "Use inputs='student' and give both models the same preparation.")
        self.converts = mode != 'student' and not unknown and not same_preparation(mine, theirs)
        if mode == 'auto' and unknown:
            print_log(f'cannot tell how {" and ".join(unknown)} prepare(s) images: {owner} '
                      "sees the inputs the student's data preprocessor prepared. Give both the "
                      f'same preparation ({owner}.cfg_options) if they differ, or set '
                      f"{owner}.inputs='student' to say so.", logger='current',
                      level=logging.WARNING)
        elif mode == 'auto' and self.converts:
            print_log(f"{owner}'s data preprocessor prepares images differently ({theirs}) "
                      f"from the student's ({mine}): {owner} gets the student's batch "
                      'converted to its own preparation (padding and input size stay the '
                      f"student's). Set {owner}.inputs='own' to say so (and input_size to "
                      "resize), or 'student' to give it the student's batch unchanged.",
                      logger='current', level=logging.WARNING)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's batch from the student's prepared ``inputs``."""
        if self.converts:
            inputs = reprepare(inputs, preparation_of(self.student),
                               preparation_of(self.teacher))
        if self.size is not None:
            inputs = resize(inputs, self.size)
        return inputs
