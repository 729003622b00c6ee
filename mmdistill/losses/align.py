"""Layers that map student channels to teacher channels before a feature loss."""
from torch import nn

ALIGN_KINDS = ('conv', 'linear')


def build_align_layer(student_channels: int, teacher_channels: int,
                      kind: str = 'conv') -> nn.Module:
    """A 1×1 conv (``kind='conv'``, for N×C×H×W) or a linear layer (``'linear'``, for N×…×C)
    from student to teacher channels; the identity when the two are equal."""
    if kind not in ALIGN_KINDS:
        raise ValueError(f"align kind must be one of {ALIGN_KINDS}, got '{kind}'")
    if student_channels == teacher_channels:
        return nn.Identity()
    if kind == 'conv':
        return nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
    return nn.Linear(student_channels, teacher_channels)


def channels_of(feature, kind: str) -> int:
    """The channel size ``build_align_layer`` acts on: dim 1 for convs, the last for linears."""
    return feature.shape[1] if kind == 'conv' else feature.shape[-1]
