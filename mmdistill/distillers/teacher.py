"""A frozen teacher: built from an OpenMMLab config and a checkpoint, run without gradients."""
import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule, revert_sync_batchnorm
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
from torch import nn

from mmdistill.engine.checkpoint import safe_checkpoint_loading
from mmdistill.utils import build_model_in_scope, load_config, model_cfg_of
from .input_preparation import TeacherInputs
from .precision import teacher_dtype, teacher_precision
from .taps import TEACHER, ModuleTaps, Tap, owner_prefix
from .timing import ForwardTimer

_MAX_KEYS_SHOWN = 8
TEACHER_KEYS = ('config', 'checkpoint', 'cfg_options', 'strict', 'dtype', 'inputs',
                'input_size')


def _show(keys: List[str]) -> str:
    shown = ', '.join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f' and {more} more' if more > 0 else '')


def check_state_dict_fits(model: nn.Module, state_dict: dict, config: str,
                          checkpoint: str) -> None:
    """Raise ``ValueError`` naming the keys when ``state_dict`` does not fit ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        f'{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}' for k, v in own.items()
        if k in state_dict and hasattr(state_dict[k], 'shape')
        and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return
    parts = []
    if missing:
        parts.append(f'missing from the checkpoint ({len(missing)}): {_show(missing)}')
    if unexpected:
        parts.append(f'not in the model ({len(unexpected)}): {_show(unexpected)}')
    if wrong_shape:
        parts.append(f'shape checkpoint vs model ({len(wrong_shape)}): {_show(wrong_shape)}')
    raise ValueError(
        f'teacher checkpoint {checkpoint} does not fit teacher config {config}:\n  ' +
        '\n  '.join(parts) +
        '\nCheck that teacher.config and teacher.checkpoint name the same model (a '
        'distiller checkpoint needs exporting first: tools/export_student.py), or set '
        'teacher.strict=False to load what fits.')


def build_teacher(config: str, checkpoint: Optional[str], cfg_options: Optional[dict] = None,
                  strict: bool = True, dtype: Optional[str] = None,
                  role: str = 'teacher') -> Tuple[nn.Module, str]:
    """Build the model of an OpenMMLab config and load its checkpoint.

    Args:
        config: a config file or a package-scoped path (``'mmdet::retinanet/...py'``).
        checkpoint: a path or URL loaded with MMEngine's loader, a local file weights-only
            (:func:`~mmdistill.engine.safe_checkpoint_loading`); ``None`` only for
            benchmarks and tests that need no trained teacher (a warning says so).
        cfg_options: overrides merged into the teacher config.
        strict: refuse a checkpoint whose keys or shapes differ from the model's.
        dtype: ``'bfloat16'`` or ``'float16'`` casts the loaded weights (and buffers) to that
            precision; ``None`` or ``'float32'`` keeps them in float32.
        role: what errors call the checkpoint (``'teacher'``, ``'teacher a'``).

    Returns:
        The teacher model (eval mode, no gradients) and the scope it was built in.
    """
    dtype = teacher_dtype(dtype)
    cfg = load_config(config, cfg_options)
    scope = cfg.get('default_scope')
    model_cfg = model_cfg_of(cfg)
    model_cfg.pop('init_cfg', None)  # the checkpoint initialises the teacher, not pretraining
    # A frozen teacher in eval mode never synchronises batch statistics: plain BN, on any
    # device and with or without a process group (the Runner does not reach the teacher).
    teacher = revert_sync_batchnorm(build_model_in_scope(model_cfg, scope))
    if checkpoint is None:
        print_log(f'teacher {config} has no checkpoint: its weights are random. Fine for '
                  'benchmarks, useless for training.', logger='current', level=logging.WARNING)
    else:
        with safe_checkpoint_loading(role):
            loaded = _load_checkpoint(checkpoint, map_location='cpu')
        state_dict = loaded.get('state_dict', loaded)
        state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                      for k, v in state_dict.items()}
        if strict:
            check_state_dict_fits(teacher, state_dict, config, checkpoint)
        _load_checkpoint_to_model(teacher, {'state_dict': state_dict}, strict=False)
        print_log(f'teacher {config} loaded from {checkpoint}', logger='current')
    # Its checkpoint initialises the teacher: an init_weights call that reaches its modules
    # (a student sharing them) must neither re-initialise them nor download pretrained weights.
    for module in teacher.modules():
        if isinstance(module, BaseModule):
            module._is_init = True
    teacher.requires_grad_(False)
    teacher.eval()
    if dtype != torch.float32:  # the network; its data preprocessor keeps exact mean and std
        for name, module in teacher.named_children():
            if name != 'data_preprocessor':
                module.to(dtype)
        print_log(f'teacher weights cast to {dtype}', logger='current')
    return teacher, scope


class FrozenTeacher:
    """One teacher of a distiller, with everything it needs to run in a training step.

    It holds the model (frozen, eval mode, in its ``dtype``), :class:`TeacherInputs` (what it
    gets from the student's batch), the taps on it and a :class:`ForwardTimer`. It is a plain
    object, not a module: whatever holds it decides where its weights go (the distiller keeps
    them out of its module tree).

    Args:
        name: its name (``teacher`` for the teacher of ``teacher=``); taps, messages and state
            dicts write it as :attr:`prefix`, ``teacher`` or ``teachers.<name>``.
        config: ``dict(config=..., checkpoint=...[, cfg_options, strict, dtype, inputs,
            input_size])``; see :func:`build_teacher` and
            :mod:`~mmdistill.distillers.input_preparation` for ``inputs`` and ``input_size``.
        student_preprocessor: the student's data preprocessor (its batch is the teacher's
            starting point).
    """

    def __init__(self, name: str, config: dict, student_preprocessor: nn.Module):
        self.name, self.prefix = name, owner_prefix(name)
        unknown = set(config) - set(TEACHER_KEYS)
        if unknown or 'config' not in config or 'checkpoint' not in config:
            raise ValueError(
                f'{self.prefix} must be dict(config=..., checkpoint=...[, cfg_options, strict, '
                f'dtype, inputs, input_size]); got keys {sorted(config)}. Use checkpoint=None '
                'only for benchmarks.')
        config = dict(config)
        inputs, input_size = config.pop('inputs', None) or 'auto', config.pop('input_size', None)
        self.described = 'the teacher' if name == TEACHER else f"the teacher '{self.prefix}'"
        self.model, self.scope = build_teacher(
            **config, role=TEACHER if name == TEACHER else f'{TEACHER} {name}')
        self.dtype = teacher_dtype(config.get('dtype'))
        self.inputs = TeacherInputs(inputs, input_size, student_preprocessor,
                                    self.model.data_preprocessor, self.prefix)
        self.taps = ModuleTaps(self.model, [], self.prefix)
        self.timer = ForwardTimer()

    def tap(self, taps: Iterable[Tap]) -> None:
        """Record ``taps`` (all on this teacher) from now on, in place of the previous ones."""
        self.taps.remove()
        self.taps = ModuleTaps(self.model, taps, self.prefix)

    def forward(self, inputs: torch.Tensor, data_samples=None,
                taps: Optional[ModuleTaps] = None) -> Dict[Tap, Any]:
        """Run the teacher as a training step does (on its inputs from the student's batch, no
        gradients, in its dtype, stopped after its deepest tap) and return what its taps (or
        ``taps``) recorded. The time it took is in ``self.timer.seconds``."""
        taps = self.taps if taps is None else taps  # (empty taps are falsy)
        device_type = inputs.device.type
        try:
            with self.timer.measure(inputs.device), torch.no_grad(), \
                    teacher_precision(self.dtype, device_type):
                own_inputs = self.inputs(inputs).to(self.dtype)
                return taps.record(lambda: self.model(own_inputs, data_samples, mode='tensor'),
                                   stop_early=True)
        except RuntimeError as error:
            if self.dtype == torch.float32:
                raise
            raise RuntimeError(
                f'{self.described} failed in {self.dtype} on {device_type} ({error}); this device '
                f"may not run that precision: try {self.prefix}.dtype='bfloat16' (CPUs, recent "
                f"GPUs) or 'float16' (GPUs), or remove {self.prefix}.dtype") from error

    def input_size(self, student_size: Sequence[int]) -> Tuple[int, int]:
        """The H×W the teacher sees when the student's batch is ``student_size``."""
        return self.inputs.size or tuple(student_size)
