"""Seeing and checking taps before training: one dry forward of the student and the teachers.

:func:`dry_run` runs the student and every teacher once, in eval mode and without gradients,
on a random batch (each teacher on its own inputs from that batch, as in training), records
what every module produces, and checks each distillation loss's inputs:

- every tap must record something (a module on the path from input to output);
- the N×C×H×W inputs of one loss must have the same H×W: a student tap and a teacher tap of
  different strides (or of a teacher whose ``input_size`` differs) are named with the
  teacher modules whose output has the student tap's H×W;
- inputs must have the channels a loss was built for (its ``student_channels`` and
  ``teacher_channels``);
- a loss that needs no data samples is run on the recorded values, so that its own shape
  checks speak (a loss that reads ground truth is not run).

``Distiller(check_taps=True)`` raises on the problems (:func:`check_taps`);
``tools/analysis/print_taps.py`` prints everything (:func:`format_report`).
"""
from collections import defaultdict
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .precision import float32_copies
from .taps import STUDENT, ModuleTaps, Tap, describe, owner_prefix

DEFAULT_INPUT_SIZE = (224, 224)
MAX_SAME_SIZE = 8  # teacher modules listed for one student tap


def shape_of(value: Any) -> str:
    """A compact description of what a module gave: ``2×8×16×16``, ``(2×8, 2×8)``..."""
    if isinstance(value, torch.Tensor):
        return '×'.join(str(n) for n in value.shape) if value.dim() else 'scalar'
    if isinstance(value, (list, tuple)):
        inner = ', '.join(shape_of(item) for item in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    if isinstance(value, dict):
        return '{' + ', '.join(f'{key}: {shape_of(item)}' for key, item in value.items()) + '}'
    return type(value).__name__


class ModuleOutput(NamedTuple):
    """What one module produced in the dry forward: its first call's output shape, the
    number of calls and, for a module called once with an N×C×H×W output (else ``None``), its
    channels, H×W and stride (its model's input size over its output size)."""
    shape: str
    calls: int
    channels: Optional[int]
    size: Optional[Tuple[int, int]]
    stride: Optional[Tuple[float, float]]


class ModelReport(NamedTuple):
    """Every module of one model, named as taps write it (``prefix``: ``student``,
    ``teacher``, ``teachers.<name>``)."""
    prefix: str
    model_type: str
    input_shape: Tuple[int, ...]
    modules: Dict[str, ModuleOutput]


class TapReport(NamedTuple):
    """The result of :func:`dry_run`."""
    models: Dict[str, ModelReport]  # by owner: student, or a teacher's name
    values: Dict[Tap, Any]
    uses: Dict[Tap, List[str]]  # tap -> 'loss.argument' that read it
    problems: List[str]
    notes: List[str]


def _record_modules(model: torch.nn.Module, forward, input_shape):
    """Run ``forward()``; return a description of the output of every named submodule of
    ``model`` that ran, and what each received (first argument) and gave, call by call."""
    received, gave = defaultdict(list), defaultdict(list)

    def hook(module, args, output, _path):
        received[_path].append(args[0] if args else None)
        gave[_path].append(output)

    handles = [module.register_forward_hook(
        lambda m, args, output, _path=path: hook(m, args, output, _path))
        for path, module in model.named_modules() if path]
    try:
        forward()
    finally:
        for handle in handles:
            handle.remove()
    described = {}
    for path, _ in model.named_modules():
        if path in gave:
            first, calls = gave[path][0], len(gave[path])
            if isinstance(first, torch.Tensor) and first.dim() == 4 and calls == 1:
                height, width = first.shape[-2:]
                described[path] = ModuleOutput(
                    shape_of(first), calls, first.shape[1], (height, width),
                    (input_shape[-2] / height, input_shape[-1] / width))
            else:
                described[path] = ModuleOutput(shape_of(first), calls, None, None, None)
    return described, received, gave


def _format_stride(stride: Tuple[float, float]) -> str:
    return '×'.join(f'{s:g}' for s in dict.fromkeys(stride))


def same_size_modules(report: TapReport, size: Tuple[int, int]) -> Dict[str, List[str]]:
    """For each teacher (as taps write it), its modules whose N×C×H×W output has H×W ``size``
    (shortest paths first, at most ``MAX_SAME_SIZE``), each with its channels. With the
    student's input size, these are the modules of the same stride as a student module of that
    output size."""
    found = {}
    for owner, model in report.models.items():
        if owner == STUDENT:
            continue
        paths = sorted((path for path, out in model.modules.items() if out.size == size),
                       key=lambda path: (path.count('.'), list(model.modules).index(path)))
        found[model.prefix] = [f'{path} ({model.modules[path].channels} ch)'
                               for path in paths[:MAX_SAME_SIZE]]
    return found


def _loss_problems(distiller, name: str, report: TapReport) -> List[str]:
    """What does not fit in the inputs of distillation loss ``name``."""
    loss, specs = distiller.distill_losses[name], distiller.loss_inputs[name]
    prefix = f"distillation loss '{name}' ({type(loss).__name__})"
    silent = [str(tap) for spec in specs.values() for tap in spec.taps
              if tap not in report.values]
    if silent:
        return [f'{prefix}: tap(s) {", ".join(silent)} recorded nothing in the dry '
                f'forward (a module off the path from input to output, one that runs only '
                'in loss mode, or a bad index: see the notes)']
    try:
        values = {arg: spec.value(report.values) for arg, spec in specs.items()}
    except (ValueError, IndexError) as error:
        return [f'{prefix}: {error}']
    problems = []
    for arg, value in values.items():
        side = arg.split('_')[0]
        expected = getattr(loss, f'{side}_channels', None)
        if isinstance(expected, int) and isinstance(value, torch.Tensor) and value.dim() >= 2 \
                and value.shape[1] != expected:
            problems.append(f'{prefix}: {arg}={specs[arg]} has {value.shape[1]} channels '
                            f'({shape_of(value)}), the loss was built with {side}_channels='
                            f'{expected}')
    maps = {arg: value for arg, value in values.items()
            if isinstance(value, torch.Tensor) and value.dim() == 4}
    if len({tuple(v.shape[-2:]) for v in maps.values()}) > 1:
        problems.append(f'{prefix}: its N×C×H×W inputs differ in spatial size: ' + ', '.join(
            f'{arg}={specs[arg]} {shape_of(v)}' for arg, v in maps.items()) +
            '. Tap modules of the same output size' + _same_size_hint(report, specs, maps))
    if not problems and name not in distiller._losses_taking_data_samples:
        try:
            with torch.no_grad():
                loss(**float32_copies(values))
        except Exception as error:  # the loss's own checks: report what it says
            problems.append(f'{prefix} fails on these inputs ('
                            + ', '.join(f'{arg}={specs[arg]}: {describe(v)}'
                                        for arg, v in values.items()) + f'): {error}')
    return problems


def _same_size_hint(report: TapReport, specs, maps) -> str:
    hints = []
    for arg, value in maps.items():
        tap = specs[arg].taps[0]
        if tap.owner != STUDENT:
            continue
        size = tuple(value.shape[-2:])
        for prefix, paths in same_size_modules(report, size).items():
            hints.append(f'{prefix} modules of output size {size[0]}×{size[1]} (that of {tap}): '
                         f'{", ".join(paths) or "none"}')
    return ('; ' + '; '.join(hints)) if hints else ''


def dry_run(distiller, input_size: Optional[Sequence[int]] = None,
            batch_size: int = 2) -> TapReport:
    """Run the student and each teacher of ``distiller`` once on a random prepared batch of
    ``input_size`` (H, W; default 224×224) and check every loss's inputs."""
    input_size = tuple(input_size or DEFAULT_INPUT_SIZE)
    mean = getattr(distiller.data_preprocessor, 'mean', None)
    channels = mean.shape[0] if isinstance(mean, torch.Tensor) and mean.dim() else 3
    device = next(distiller.student.parameters()).device
    # A generator of its own: checking leaves the global random state (and training) as it was.
    inputs = torch.randn(batch_size, channels, *input_size,
                         generator=torch.Generator().manual_seed(0)).to(device)
    taps = {tap for specs in distiller.loss_inputs.values() for spec in specs.values()
            for tap in spec.taps}
    uses = defaultdict(list)
    for name, specs in distiller.loss_inputs.items():
        for arg, spec in specs.items():
            for tap in spec.taps:
                uses[tap].append(f'{name}.{arg}')
    models, values, notes = {}, {}, []
    was_training = distiller.training
    distiller.eval()
    try:
        owners = [(STUDENT, distiller.student)] + [
            (owner, teacher.model) for owner, teacher in distiller.teachers.items()]
        for owner, model in owners:
            if owner == STUDENT:
                shape = tuple(inputs.shape)

                def forward(_model=model):
                    with torch.no_grad():
                        _model(inputs, None, mode='tensor')
            else:
                teacher = distiller.teachers[owner]
                shape = (batch_size, channels, *teacher.input_size(input_size))

                def forward(_teacher=teacher, _model=model):  # its own inputs; no taps: runs whole
                    _teacher.forward(inputs, None, taps=ModuleTaps(_model, [], _teacher.prefix))
            modules, received, gave = _record_modules(model, forward, shape)
            models[owner] = ModelReport(owner_prefix(owner), type(model).__name__, shape,
                                        modules)
            for tap in [tap for tap in taps if tap.owner == owner]:
                calls = (received if tap.port == 'input' else gave).get(tap.path)
                if calls:
                    try:
                        values[tap] = tap.select(calls[0] if len(calls) == 1 else calls)
                    except IndexError as error:
                        notes.append(str(error))
    finally:
        distiller.train(was_training)
    report = TapReport(models, values, dict(uses), [], notes)
    for name in distiller.distill_losses:
        report.problems.extend(_loss_problems(distiller, name, report))
    return report


def check_taps(distiller, input_size: Optional[Sequence[int]] = None) -> TapReport:
    """:func:`dry_run`, raising a ``ValueError`` that lists every problem found."""
    report = dry_run(distiller, input_size)
    if report.problems:
        raise ValueError(
            f'check_taps found {len(report.problems)} problem(s) with the distillation losses\' '
            'inputs (a dry forward on a random batch of '
            f"{'×'.join(map(str, report.models[STUDENT].input_shape))}):\n  - " +
            '\n  - '.join(report.problems) +
            '\nSee every module and its output shape with: python tools/analysis/print_taps.py '
            'CONFIG')
    return report


def format_report(report: TapReport) -> str:
    """Every module of every model with its output (taps marked), then each loss's verdict
    and, for each student tap, the teacher modules of the same output size."""
    lines = []
    for owner, model in report.models.items():
        lines.append(f'{model.prefix} ({model.model_type}), input '
                     f"{'×'.join(map(str, model.input_shape))}:")
        width = max((len(path) for path in model.modules), default=0)
        shape_width = max((len(out.shape) for out in model.modules.values()), default=0)
        tapped = defaultdict(list)
        for tap, users in report.uses.items():
            if tap.owner == owner:
                tapped[tap.path].append(f'{tap}: ' + ', '.join(users))
        for path, out in model.modules.items():
            extra = f'  ×{out.calls} calls' if out.calls > 1 else ''
            if out.stride is not None:
                extra += f'  stride {_format_stride(out.stride)}'
            mark = ''.join(f'  <== {use}' for use in tapped.get(path, []))
            lines.append(f'  {path:<{width}}  {out.shape:<{shape_width}}{extra}{mark}'.rstrip())
        lines.append('')
    lines.append('losses:')
    for problem in report.problems:
        lines.append(f'  PROBLEM {problem}')
    if not report.problems:
        lines.append('  every loss\'s inputs fit')
    for note in report.notes:
        lines.append(f'  note: {note}')
    student = report.models[STUDENT].modules
    student_taps = sorted({tap for tap in report.uses if tap.owner == STUDENT
                           and tap.path in student and student[tap.path].size}, key=str)
    if student_taps and len(report.models) > 1:
        lines.append('')
        lines.append('teacher modules with the output size of each student tap (the same '
                     'stride when the teacher sees the student\'s input size):')
        for tap in student_taps:
            out = student[tap.path]
            lines.append(f'  {tap} ({out.size[0]}×{out.size[1]}, stride '
                         f'{_format_stride(out.stride)}, {out.channels} ch):')
            for prefix, paths in same_size_modules(report, out.size).items():
                lines.append(f'    {prefix}: {", ".join(paths) or "none"}')
    return '\n'.join(lines)
