"""Numeric precision in distillation: losses in float32 under autocast, a half-precision teacher.

Under mixed precision (MMEngine's ``AmpOptimWrapper``, or any ``torch.autocast``) the student's
features come out in float16 or bfloat16. Distillation losses sum squares over whole feature
maps (FGD, MGD: easily above float16's largest value, 65504), so the distiller computes every
loss in float32, from float32 copies of its inputs, with autocast switched off
(:func:`full_precision`). A teacher can also run in half precision on its own
(``teacher=dict(..., dtype='bfloat16')``, :func:`teacher_precision`): its weights are cast once,
its forward runs in that dtype whatever the student's step uses, and its tapped outputs reach
the losses in float32 like everything else.
"""
from contextlib import nullcontext
from typing import Any, Optional

import torch

TEACHER_DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16,
                  'float16': torch.float16}


def teacher_dtype(name: Optional[str]) -> torch.dtype:
    """The torch dtype of a teacher's ``dtype`` setting (``None``: float32)."""
    if name is None:
        return torch.float32
    if name not in TEACHER_DTYPES:
        raise ValueError(f"teacher dtype must be one of {list(TEACHER_DTYPES)}, got '{name}'")
    return TEACHER_DTYPES[name]


def float32_copies(value: Any) -> Any:
    """``value`` with each floating-point tensor in it (also inside lists, tuples and dicts) in
    float32: a float32 copy of a half-precision tensor, a float32 tensor as it is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: float32_copies(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, '_fields'):  # a named tuple
        return type(value)(*(float32_copies(item) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(float32_copies(item) for item in value)
    return value


def full_precision(device_type: str):
    """A context in which autocast is off on ``device_type`` (float32 ops stay float32)."""
    return torch.autocast(device_type, enabled=False)


def teacher_precision(dtype: torch.dtype, device_type: str):
    """A context for the teacher's forward: for a half-precision teacher, autocast to its
    dtype (it overrides the student step's autocast, and casts what the teacher's code creates
    in float32 on the fly); a float32 teacher runs in the student step's context."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type, dtype=dtype)
