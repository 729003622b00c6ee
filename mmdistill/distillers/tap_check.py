"""Seeing and checking taps before training: one dry forward of the student and the teachers.

:func:`dry_run` runs the student and every teacher once, in eval mode and without gradients,
on a random batch (each teacher on its own inputs from that batch, as in training), records
what every module produces, and checks each distillation loss's inputs:

- every tap must record something (a module on the path from input to output). The dry
  forward runs the models in ``tensor`` mode, as training runs the teachers; the student
  trains in ``loss`` mode, where some modules run that ``tensor`` mode skips (mmseg's
  ``auxiliary_head``). A student tap that records nothing is looked for in one ``loss``-mode
  forward of the student on a synthetic batch of its codebase: if it records there, it is
  *train-only*, a note (its loss is not checked), not a problem;
- the N×C×H×W inputs of one loss must have the same H×W. The advice follows what the loss
  reads: for logits (arguments named ``*_logits``: a head's final classification conv or
  fc), one output stride and, where a teacher sees its own ``input_size``, the student's
  input size; for features, the teacher modules whose output has the student tap's H×W (and
  the teacher's ``input_size`` where it differs);
- inputs must have the channels a loss was built for (its ``student_channels`` and
  ``teacher_channels``), else the modules of that many channels are named;
- a loss that needs no data samples is run on the recorded values, so that its own shape
  checks speak (saying what differs: classes, spatial size, channels...); a loss that reads
  ground truth is not run.

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
    train_only: List[Tap]  # student taps that record in loss mode only
    index_errors: Dict[Tap, str]  # taps whose index does not fit what they record


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


def _hw(size: Sequence[int]) -> str:
    return '×'.join(str(n) for n in size)


def _ranked(model: ModelReport, paths: List[str]) -> List[str]:
    """``paths`` of ``model``, shortest first, then in the order the model ran them."""
    order = list(model.modules)
    return sorted(paths, key=lambda path: (path.count('.'), order.index(path)))


def _is_logits(uses: Sequence[str]) -> bool:
    """Whether a tap read by ``uses`` (``'loss.argument'``) gives logits: losses name their
    logit inputs ``*_logits`` (a head's final classification conv or fc)."""
    return any('logits' in use.split('.')[-1] for use in uses)


def same_size_modules(report: TapReport, size: Tuple[int, int]) -> Dict[str, List[str]]:
    """For each teacher (as taps write it), its modules whose N×C×H×W output has H×W ``size``
    (shortest paths first, at most ``MAX_SAME_SIZE``), each with its channels. With the
    student's input size, these are the modules of the same stride as a student module of that
    output size."""
    found = {}
    for owner, model in report.models.items():
        if owner == STUDENT:
            continue
        paths = _ranked(model, [path for path, out in model.modules.items() if out.size == size])
        found[model.prefix] = [f'{path} ({model.modules[path].channels} ch)'
                               for path in paths[:MAX_SAME_SIZE]]
    return found


def same_shape_modules(report: TapReport, shape: str) -> Dict[str, List[str]]:
    """For each teacher, its modules whose output has ``shape`` (as :func:`shape_of` writes
    it): for a student tap on logits, the teacher modules of its class count and size."""
    found = {}
    for owner, model in report.models.items():
        if owner != STUDENT:
            paths = [path for path, out in model.modules.items() if out.shape == shape]
            found[model.prefix] = _ranked(model, paths)[:MAX_SAME_SIZE]
    return found


def _modules_with_channels(report: TapReport, owner: str, channels: int,
                           size: Optional[Tuple[int, int]]) -> List[str]:
    """The modules of ``owner`` with an N×``channels``×H×W output, those of H×W ``size``
    first, each with its size and stride."""
    model = report.models[owner]
    paths = _ranked(model, [path for path, out in model.modules.items()
                            if out.channels == channels])
    paths.sort(key=lambda path: model.modules[path].size != size)
    return [f'{path} ({_hw(model.modules[path].size)}, stride '
            f'{_format_stride(model.modules[path].stride)})' for path in paths[:MAX_SAME_SIZE]]


def _why_silent(tap: Tap, report: TapReport) -> str:
    """Why ``tap`` has no value: a bad index, or a module that did not run."""
    if tap in report.index_errors:
        return report.index_errors[tap]
    if tap.owner == STUDENT:
        return (f'tap {tap} recorded nothing: the student calls that module neither in the dry '
                'forward (tensor mode) nor in training (loss mode, unless the notes say it '
                'could not run): a module off the path from input to output')
    return (f'tap {tap} recorded nothing: teachers run in tensor mode, in training too, so a '
            'module off the path from input to output, or one that runs only in loss mode '
            "(mmseg's auxiliary_head), never records")


def _channel_problems(loss, specs, values: Dict[str, Any], report: TapReport,
                      prefix: str) -> List[str]:
    """Inputs whose channels differ from the loss's ``student_channels``/``teacher_channels``,
    each with the modules of its model that have that many channels."""
    maps = [v for v in values.values() if isinstance(v, torch.Tensor) and v.dim() == 4]
    size = tuple(maps[0].shape[-2:]) if maps else None
    problems = []
    for arg, value in values.items():
        side = arg.split('_')[0]
        expected = getattr(loss, f'{side}_channels', None)
        if not (isinstance(expected, int) and isinstance(value, torch.Tensor)
                and value.dim() >= 2 and value.shape[1] != expected):
            continue
        owner = specs[arg].taps[0].owner
        fitting = _modules_with_channels(report, owner, expected, size)
        problems.append(
            f'{prefix}: {arg}={specs[arg]} has {value.shape[1]} channels ({shape_of(value)}), '
            f'the loss was built with {side}_channels={expected}: set it to {value.shape[1]}, '
            f'or tap a module of {expected} channels ({report.models[owner].prefix}: '
            f'{", ".join(fitting) or "none"})')
    return problems


def _own_input_sizes(report: TapReport, owners: Sequence[str]) -> Tuple[List[str], str]:
    """The teachers among ``owners`` that see another input size than the student (their own
    ``input_size``), and a sentence that says so."""
    student = tuple(report.models[STUDENT].input_shape[-2:])
    differ = [owner for owner in owners if owner != STUDENT
              and tuple(report.models[owner].input_shape[-2:]) != student]
    said = '; '.join(f"{report.models[owner].prefix} sees "
                     f"{_hw(report.models[owner].input_shape[-2:])} inputs (its input_size, "
                     f"with inputs='own'), the student {_hw(student)}" for owner in differ)
    return differ, said


def _size_problems(specs, values: Dict[str, Any], report: TapReport, prefix: str) -> List[str]:
    """N×C×H×W inputs of different H×W, with advice by what they are (logits or features)."""
    maps = {arg: value for arg, value in values.items()
            if isinstance(value, torch.Tensor) and value.dim() == 4}
    if len({tuple(v.shape[-2:]) for v in maps.values()}) <= 1:
        return []
    owners = list(dict.fromkeys(tap.owner for arg in maps for tap in specs[arg].taps))
    differ, said = _own_input_sizes(report, owners)
    if all('logits' in arg for arg in maps):
        advice = _logit_size_advice(specs, maps, report, differ, said)
    else:
        advice = (f'{said}: at one stride its maps have other sizes. ' if differ else '') + \
            'Tap modules of the same output size' + _same_size_hint(report, specs, maps)
    return [f'{prefix}: its N×C×H×W inputs differ in spatial size: ' + ', '.join(
        f'{arg}={specs[arg]} {shape_of(v)}' for arg, v in maps.items()) + f'. {advice}']


def _logit_size_advice(specs, maps: Dict[str, torch.Tensor], report: TapReport,
                       differ: List[str], said: str) -> str:
    """Logit maps of different sizes: the teacher's input size, or the heads' strides."""
    if differ:
        student = tuple(report.models[STUDENT].input_shape[-2:])
        names = ', '.join(report.models[owner].prefix for owner in differ)
        return (f"{said}. Logits are compared position by position: give {names} the "
                f"student's input size (input_size={student}) or no input_size")
    strides = ', '.join(
        f'{specs[arg]} stride ' + _format_stride(tuple(
            i / o for i, o in zip(report.models[specs[arg].taps[0].owner].input_shape[-2:],
                                  value.shape[-2:])))
        for arg, value in maps.items())
    return ('Logits are compared position by position, so both heads must predict at one '
            f'output stride ({strides}): tap each model\'s final classification layer, at '
            'the same stride')


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


def _loss_problems(distiller, name: str, report: TapReport) -> List[str]:
    """What does not fit in the inputs of distillation loss ``name`` (a loss that reads a
    train-only tap is left unchecked: :func:`dry_run` notes it)."""
    loss, specs = distiller.distill_losses[name], distiller.loss_inputs[name]
    prefix = f"distillation loss '{name}' ({type(loss).__name__})"
    missing = [tap for spec in specs.values() for tap in spec.taps if tap not in report.values]
    if missing:
        return [f'{prefix}: {_why_silent(tap, report)}' for tap in missing
                if tap not in report.train_only]
    try:
        values = {arg: spec.value(report.values) for arg, spec in specs.items()}
    except (ValueError, IndexError) as error:
        return [f'{prefix}: {error}']
    problems = _channel_problems(loss, specs, values, report, prefix) + \
        _size_problems(specs, values, report, prefix)
    if not problems and name not in distiller._losses_taking_data_samples:
        try:
            with torch.no_grad():
                loss(**float32_copies(values))
        except Exception as error:  # the loss's own checks: report what it says
            problems.append(f'{prefix} fails on these inputs ('
                            + ', '.join(f'{arg}={specs[arg]}: {describe(v)}'
                                        for arg, v in values.items()) + f'): {error}')
    return problems


def _modules_run_in_training(distiller, input_size: Tuple[int, int],
                             batch_size: int) -> Tuple[Optional[set], str]:
    """The paths of the student's modules that run in its training forward (``loss`` mode, in
    eval mode and without gradients) on a synthetic batch of its codebase; ``None`` and why
    when it cannot run."""
    # Imported here: mmdistill.benchmarking imports the distillers.
    from mmdistill.benchmarking import synthetic_batch
    student = distiller.student
    device = next(student.parameters()).device
    try:
        batch = synthetic_batch(student, distiller.student_scope, batch_size, input_size)
        with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []), \
                torch.no_grad():
            data = distiller.data_preprocessor(batch, False)
            ran, _, _ = _record_modules(student, lambda: student(**data, mode='loss'),
                                        tuple(data['inputs'].shape))
    except Exception as error:  # a codebase or model the synthetic batch does not fit
        return None, (f'the student could not run in loss mode on a synthetic batch ({error}): '
                      'taps that record nothing may be train-only')
    return set(ran), ''


def _find_train_only(distiller, report: TapReport, input_size: Tuple[int, int],
                     batch_size: int) -> None:
    """Add to ``report`` the student taps that record nothing in the dry forward but run in
    training, and a note for each loss that reads one."""
    silent = [tap for tap in report.uses if tap.owner == STUDENT
              and tap not in report.values and tap not in report.index_errors]
    if not silent:
        return
    trained, why_not = _modules_run_in_training(distiller, input_size, batch_size)
    if trained is None:
        report.notes.append(why_not)
        return
    report.train_only.extend(tap for tap in silent if tap.path in trained)
    for tap in report.train_only:
        report.notes.append(
            f'{tap} ({", ".join(report.uses[tap])}) is train-only: the student runs it in '
            'training (loss mode), not in the dry forward (tensor mode), so that loss is not '
            'checked here')


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
    report = TapReport({}, {}, dict(uses), [], [], [], {})
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
            report.models[owner] = ModelReport(owner_prefix(owner), type(model).__name__,
                                               shape, modules)
            for tap in [tap for tap in taps if tap.owner == owner]:
                calls = (received if tap.port == 'input' else gave).get(tap.path)
                if calls:
                    try:
                        report.values[tap] = tap.select(calls[0] if len(calls) == 1 else calls)
                    except IndexError as error:
                        report.index_errors[tap] = str(error)
        _find_train_only(distiller, report, input_size, batch_size)
    finally:
        distiller.train(was_training)
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


def _model_lines(report: TapReport, owner: str, model: ModelReport) -> List[str]:
    """Every module of one model with its output, the taps on it marked."""
    lines = [f"{model.prefix} ({model.model_type}), input {_hw(model.input_shape)}:"]
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
    return lines + ['']


def _teacher_match_lines(report: TapReport) -> List[str]:
    """For each student tap, the teacher modules that fit it: for logits those of its shape
    (class count and size), for features those of its H×W."""
    student = report.models[STUDENT].modules
    taps = sorted({tap for tap, uses in report.uses.items() if tap.owner == STUDENT
                   and tap.path in student
                   and (student[tap.path].size or _is_logits(uses))}, key=str)
    if not taps or len(report.models) == 1:
        return []
    lines = ['', 'teacher modules that fit each student tap: for logits the same output shape '
             '(classes and size), for features the same size (the same stride when the teacher '
             'sees the student\'s input size):']
    for tap in taps:
        out = student[tap.path]
        if _is_logits(report.uses[tap]):
            lines.append(f'  {tap} ({out.shape}, logits):')
            found = same_shape_modules(report, out.shape)
            missing = 'none: it predicts other classes, or at another size'
        else:
            lines.append(f'  {tap} ({_hw(out.size)}, stride {_format_stride(out.stride)}, '
                         f'{out.channels} ch):')
            found, missing = same_size_modules(report, out.size), 'none'
        lines.extend(f'    {prefix}: {", ".join(paths) or missing}'
                     for prefix, paths in found.items())
    return lines


def format_report(report: TapReport) -> str:
    """Every module of every model with its output (taps marked), then each loss's verdict,
    the notes (train-only taps) and, for each student tap, the teacher modules that fit it."""
    lines = []
    for owner, model in report.models.items():
        lines.extend(_model_lines(report, owner, model))
    lines.append('losses:')
    lines.extend(f'  PROBLEM {problem}' for problem in report.problems)
    if not report.problems:
        lines.append('  every loss\'s inputs fit' + (' (train-only taps aside)'
                                                     if report.train_only else ''))
    lines.extend(f'  note: {note}' for note in report.notes)
    return '\n'.join(lines + _teacher_match_lines(report))
