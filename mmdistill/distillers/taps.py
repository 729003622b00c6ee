"""Taps: forward hooks that record what named submodules produce during a forward pass."""
import difflib
import re
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn

TAP_PORTS = ('output', 'input')
STUDENT = 'student'
# The name ``teacher=dict(...)`` gives its teacher, tapped as 'teacher.<module>'; any other
# teacher is tapped as 'teachers.<name>.<module>'.
TEACHER = 'teacher'
TEACHERS = 'teachers'
_INDICES = re.compile(r'((?:\[-?\d+\])*)$')


def owner_prefix(owner: str) -> str:
    """How taps, messages and state dicts write a model: ``student``, ``teacher`` (the teacher
    named ``teacher``, as ``teacher=`` names it) or ``teachers.<name>``."""
    return owner if owner in (STUDENT, TEACHER) else f'{TEACHERS}.{owner}'


class Tap(NamedTuple):
    """Where a loss input comes from: ``'<model>.<module path>[:input][[i]...]'``.

    ``owner`` is ``student`` or a teacher's name: ``teacher`` for ``'teacher.<module path>'``
    (the teacher of ``teacher=``), ``<name>`` for ``'teachers.<name>.<module path>'`` (one of
    the named teachers of ``teachers=``); ``path`` a dotted module path inside it
    (``neck.fpn_convs.0.conv``); ``port`` is ``output`` (default) or ``input`` (the first
    positional argument of the module's forward). ``index`` picks elements, in order, of what
    the tap gives when that is a tuple or list: ``'student.backbone[3]'`` is the fourth of the
    stages a backbone returns, ``'student.bbox_head.retina_cls[0]'`` the first call of a module
    that runs once per FPN level, ``'student.neck:input[-1]'`` the last feature the neck
    receives, ``'teachers.det.neck.fpn_convs.0.conv'`` a module of the teacher named ``det``.
    """
    owner: str
    path: str
    port: str = 'output'
    index: Tuple[int, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> 'Tap':
        if not isinstance(spec, str):
            raise ValueError(f'a tap is a string such as \'student.neck\', got {spec!r}')
        indices = _INDICES.search(spec).group(1)
        location, _, port = spec[:len(spec) - len(indices)].partition(':')
        owner, _, path = location.partition('.')
        if owner == TEACHERS:
            owner, _, path = path.partition('.')
            owner = '' if owner == STUDENT else owner  # no teacher is named 'student'
        elif owner not in (STUDENT, TEACHER):
            owner = ''
        port = port or 'output'
        if not owner or not path:
            raise ValueError(
                f"tap '{spec}' must look like 'student.<module path>', 'teacher.<module "
                "path>' or 'teachers.<teacher name>.<module path>', e.g. "
                "'student.neck.fpn_convs.0.conv'")
        if '[' in path or '[' in port:
            raise ValueError(f"tap '{spec}': element indices go last, after ':input' if any, "
                             "e.g. 'student.backbone[3]' or 'student.neck:input[0]'")
        if port not in TAP_PORTS:
            raise ValueError(f"tap '{spec}': the part after ':' must be one of {TAP_PORTS}")
        return cls(owner, path, port, tuple(int(i) for i in re.findall(r'-?\d+', indices)))

    @property
    def taps(self) -> Tuple['Tap']:
        """The taps this loss input reads: itself (see :class:`TapMean` for several)."""
        return (self, )

    def value(self, records: Dict['Tap', Any]) -> Any:
        """What this tap recorded in a forward pass."""
        return records[self]

    def __str__(self) -> str:
        suffix = '' if self.port == 'output' else f':{self.port}'
        return (f'{owner_prefix(self.owner)}.{self.path}{suffix}' +
                ''.join(f'[{i}]' for i in self.index))

    def select(self, value: Any) -> Any:
        """The element of ``value`` (what the tapped module gave) that ``index`` names."""
        for depth, i in enumerate(self.index):
            if not isinstance(value, (tuple, list)) or not -len(value) <= i < len(value):
                given = self._replace(index=self.index[:depth])
                raise IndexError(f"tap '{self}': '{given}' gives {describe(value)}, which has "
                                 f'no element [{i}]')
            value = value[i]
        return value


class TapMean(NamedTuple):
    """The element-wise mean of the tensors of several taps of the same shape:

    .. math::
        x = \\frac{1}{K} \\sum_{k=1}^{K} x_k

    Written ``dict(mean=['teachers.a.head.fc', 'teachers.b.head.fc'])`` in a loss's
    ``inputs``: one target made of several teachers (for logits, the softmax of the mean is the
    normalised geometric mean of the teachers' softmax distributions). Computed in float32.
    """
    taps: Tuple[Tap, ...]

    def value(self, records: Dict[Tap, Any]) -> torch.Tensor:
        values = [records[tap] for tap in self.taps]
        shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in values]
        if None in shapes or len(set(shapes)) > 1:
            given = '; '.join(f'{tap}: {describe(v)}' for tap, v in zip(self.taps, values))
            raise ValueError(f'{self} needs tensors of one shape, got {given}. Tap modules '
                             'that give the same shape (print_taps.py lists them).')
        return torch.stack([v.float() for v in values]).mean(0)

    def __str__(self) -> str:
        return f'mean({", ".join(str(tap) for tap in self.taps)})'


LossInput = Union[Tap, TapMean]


def parse_loss_input(spec: Any) -> LossInput:
    """A loss input from its config: a tap string, or ``dict(mean=[tap, tap, ...])``."""
    if isinstance(spec, str):
        return Tap.parse(spec)
    if isinstance(spec, dict) and set(spec) == {'mean'} \
            and isinstance(spec['mean'], (list, tuple)) and len(spec['mean']) >= 2:
        return TapMean(tuple(Tap.parse(tap) for tap in spec['mean']))
    raise ValueError(f"a loss input is a tap ('teacher.head.fc') or dict(mean=[tap, tap, ...]) "
                     f'of two taps or more, got {spec!r}')


def describe(value: Any) -> str:
    """A short description of a recorded value for error messages: type and shapes."""
    if isinstance(value, torch.Tensor):
        return f'a tensor of shape {tuple(value.shape)}'
    if isinstance(value, (tuple, list)):
        items = ', '.join(f'[{i}] ' + (f'tensor {tuple(v.shape)}' if isinstance(v, torch.Tensor)
                                        else type(v).__name__) for i, v in enumerate(value))
        return f'a {type(value).__name__} of {len(value)} ({items})'
    if isinstance(value, dict):
        return f'a dict with keys {list(value)}'
    return f'a {type(value).__name__}'


def _by_name(calls: Dict[Tap, int]) -> Dict[str, int]:
    return {str(tap): n for tap, n in calls.items()}


class _AllTapsRecorded(Exception):
    """Raised inside a forward pass to stop it once every tap has what it needs."""


def find_submodule(root: nn.Module, path: str, owner: str) -> nn.Module:
    """``root.get_submodule(path)`` with an error that lists the closest existing names."""
    names = dict(root.named_modules())
    if path in names:
        return names[path]
    close = difflib.get_close_matches(path, [n for n in names if n], n=5, cutoff=0.5)
    hint = f' Closest names: {", ".join(close)}.' if close else ''
    raise KeyError(f"{owner} has no module '{path}'.{hint} "
                   f'List them with: [n for n, _ in model.{owner}.named_modules()]')


class ModuleTaps:
    """Records the outputs (or inputs) of named submodules of one model.

    Each tap keeps every value its module produced during the last :meth:`record` call: a
    module called once yields a tensor (or whatever it returns), a module called several times
    (a head shared by FPN levels) a list in call order.

    With ``stop_early=True`` the forward pass is cut short as soon as every tap has recorded as
    many calls as on the first, complete pass: a teacher tapped only in its neck never runs
    its head.

    Args:
        root: the model whose submodules are tapped.
        taps: the taps on this model.
        owner: the model's name in messages (``student``/``teacher``).
    """

    def __init__(self, root: nn.Module, taps: Iterable[Tap], owner: str):
        self.owner = owner
        self._records: Dict[Tap, List[Any]] = {}
        self._expected_calls: Optional[Dict[Tap, int]] = None
        self._recording = False
        self._stop_early = False
        self._handles = []
        for tap in dict.fromkeys(taps):
            module = find_submodule(root, tap.path, owner)
            self._records[tap] = []
            self._handles.append(module.register_forward_hook(self._make_hook(tap)))

    def __len__(self) -> int:
        return len(self._records)

    def _make_hook(self, tap: Tap) -> Callable:

        def hook(module, args, output):
            if not self._recording:  # validation and plain forward passes keep nothing
                return
            self._records[tap].append(args[0] if tap.port == 'input' else output)
            if self._stop_early and self._complete():
                raise _AllTapsRecorded

        return hook

    def _complete(self) -> bool:
        return all(
            len(values) >= self._expected_calls[tap] for tap, values in self._records.items())

    def record(self, forward: Callable[[], Any], stop_early: bool = False) -> Dict[Tap, Any]:
        """Run ``forward()`` and return what each tap recorded during it."""
        for values in self._records.values():  # left over if the last forward raised
            values.clear()
        self._stop_early = stop_early and self._expected_calls is not None
        self._recording = True
        try:
            forward()
        except _AllTapsRecorded:
            pass
        finally:
            self._recording = self._stop_early = False
        calls = {tap: len(values) for tap, values in self._records.items()}
        silent = [str(tap) for tap, n in calls.items() if n == 0]
        if silent:
            raise RuntimeError(
                f'tap(s) {", ".join(silent)} recorded nothing: the module exists but the '
                f"{self.owner}'s forward pass does not call it. Tap a module on the path "
                'from the input to the output.')
        if self._expected_calls is None:
            self._expected_calls = calls
        elif calls != self._expected_calls:
            raise RuntimeError(
                f'{self.owner} taps were called {_by_name(calls)} times, but '
                f'{_by_name(self._expected_calls)} on the first pass: the forward pass changed '
                'shape between iterations.')
        recorded = {tap: tap.select(values[0] if len(values) == 1 else list(values))
                    for tap, values in self._records.items()}
        for values in self._records.values():  # hold no tensor beyond this step
            values.clear()
        return recorded

    def remove(self) -> None:
        """Remove the forward hooks from the tapped modules."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
