"""The frozen teachers of a distiller, by name: ``teachers=dict(<name>=dict(...), ...)``, of
which ``teacher=dict(...)`` is the one named ``teacher``."""
import difflib
from typing import (Any, Collection, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Tuple)

import torch
from mmengine.model import BaseModel

from .taps import STUDENT, TEACHER, TEACHERS, Tap, owner_prefix
from .teacher import FrozenTeacher


def named_teachers(teacher: Optional[dict],
                   teachers: Optional[Dict[str, dict]]) -> Dict[str, dict]:
    """The teachers' dicts by name, from the distiller's ``teacher=`` and ``teachers=`` (one of
    the two, or neither): ``teacher=dict(...)`` is ``teachers=dict(teacher=dict(...))``."""
    if teacher is not None and teachers is not None:
        raise ValueError(
            'give the distiller teacher=dict(...) or teachers=dict(<name>=dict(...), ...), '
            "not both: taps on the single teacher read 'teacher.<module>', on a named one "
            "'teachers.<name>.<module>'. Move the single teacher into teachers= under a "
            'name of its own.')
    if teacher is not None:
        return {TEACHER: teacher}
    if teachers is not None and (not isinstance(teachers, Mapping) or not teachers):
        raise ValueError('teachers must be a non-empty dict(<name>=dict(config=..., '
                         f'checkpoint=...), ...), got {teachers!r}')
    return dict(teachers or {})


def check_tap_owner(tap: Tap, names: Collection[str], user: str) -> None:
    """Raise a ``ValueError`` naming the known teachers when ``tap`` reads a teacher not in
    ``names`` (the configured teachers' names); ``user`` says who taps (``distillation loss
    'kd'``). It reads the names only, so it runs before any teacher is built."""
    if tap.owner == STUDENT or tap.owner in names:
        return
    if not names:
        raise ValueError(f"{user} taps the teacher, but the distiller has no teacher "
                         f"(teacher=None, teachers=None): '{tap}'")
    known = [owner_prefix(name) for name in names]
    wanted = owner_prefix(tap.owner)
    close = difflib.get_close_matches(wanted, known, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ''
    raise ValueError(f"{user} taps '{tap}', but the distiller has no teacher "
                     f"'{wanted}'; its teachers are {', '.join(known)}.{hint}")


class Teachers(Mapping):
    """The teachers of a distiller, by name (the ``owner`` of the taps on them).

    It is the one place that reaches the teachers' models, which are not submodules of the
    distiller: mode changes (:meth:`train`), device and dtype moves (:meth:`apply`,
    :meth:`set_device`), state dicts (:meth:`save_into`, :meth:`take_from`) and the forward
    passes of a training step (:meth:`forward`: each teacher only when asked for, stopped at its
    own deepest tap).

    Args:
        configs: ``name -> teacher dict`` (:func:`named_teachers`); names are Python
            identifiers other than ``student``.
        student_preprocessor: the student's data preprocessor.
    """

    def __init__(self, configs: Dict[str, dict], student_preprocessor):
        for name, config in configs.items():
            if not isinstance(name, str) or not name.isidentifier():
                fix = str(name).replace('-', '_').replace('.', '_').replace(' ', '_')
                raise ValueError(
                    f'teacher name {name!r} must be a Python identifier (letters, digits, '
                    f"'_'; taps read 'teachers.<name>.<module>'), e.g. {fix!r}")
            if name == STUDENT:
                raise ValueError(f"no teacher can be named '{STUDENT}': taps "
                                 f"'{STUDENT}.<module>' read the student")
            if not isinstance(config, Mapping):
                raise ValueError(f'{owner_prefix(name)} must be dict(config=..., '
                                 f'checkpoint=...), got {config!r}')
        self._teachers = {name: FrozenTeacher(name, dict(config), student_preprocessor)
                          for name, config in configs.items()}

    def __getitem__(self, name: str) -> FrozenTeacher:
        return self._teachers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._teachers)

    def __len__(self) -> int:
        return len(self._teachers)

    def tap(self, taps: Iterable[Tap]) -> None:
        """Put ``taps`` (of any model; those on teachers must be known) on their teachers."""
        taps = list(taps)
        for name, teacher in self._teachers.items():
            teacher.tap([tap for tap in taps if tap.owner == name])

    def remove_taps(self) -> None:
        for teacher in self._teachers.values():
            teacher.taps.remove()

    def forward(self, names: Iterable[str], inputs: torch.Tensor,
                data_samples=None) -> Tuple[Dict[Tap, Any], Dict[str, float]]:
        """Run the teachers ``names`` (in their order here) on the student's batch ``inputs``;
        return what their taps recorded and the seconds each took."""
        records, seconds, wanted = {}, {}, set(names)
        for name in [n for n in self._teachers if n in wanted]:
            records.update(self._teachers[name].forward(inputs, data_samples))
            seconds[name] = self._teachers[name].timer.seconds
        return records, seconds

    def times(self, seconds: Dict[str, float]) -> Dict[str, torch.Tensor]:
        """The log entries of a step's ``seconds`` per teacher that ran: ``teacher_time``, the
        sum, and ``teacher_time_<name>`` for each teacher (0 if it did not run), unless the
        only one is ``teacher`` (``teacher=``), whose time is the sum."""
        if not self._teachers:
            return {}
        times = {'teacher_time': torch.tensor(sum(seconds.values(), 0.0))}
        if list(self._teachers) != [TEACHER]:
            times.update({f'teacher_time_{name}': torch.tensor(seconds.get(name, 0.0))
                          for name in self._teachers})
        return times

    # ------------------------------------------------------ what the module tree cannot reach
    def train(self, mode: bool) -> None:
        for teacher in self._teachers.values():
            teacher.model.train(mode)

    def apply(self, fn, *args, **kwargs) -> None:
        for teacher in self._teachers.values():
            teacher.model._apply(fn, *args, **kwargs)

    def set_device(self, device: torch.device) -> None:
        """Tell each teacher's data preprocessor where it lives."""
        for teacher in self._teachers.values():
            if isinstance(teacher.model, BaseModel):
                teacher.model._set_device(device)

    def save_into(self, state_dict: dict, prefix: str) -> None:
        """Write each teacher's weights into ``state_dict`` under ``<prefix>teacher.`` (the
        teacher named ``teacher``) or ``<prefix>teachers.<name>.``."""
        for teacher in self._teachers.values():
            teacher.model.state_dict(destination=state_dict, prefix=f'{prefix}{teacher.prefix}.')

    def take_from(self, state_dict: dict, prefix: str, load: bool,
                  missing_keys: List[str], unexpected_keys: List[str]) -> None:
        """Take every teacher entry (``<prefix>teacher.*``, ``<prefix>teachers.*``) out of
        ``state_dict``; with ``load``, load each teacher's and report what did not fit."""
        saved = [key for key in state_dict
                 if key.startswith((f'{prefix}{TEACHER}.', f'{prefix}{TEACHERS}.'))]
        saved = {key: state_dict.pop(key) for key in saved}
        if not load or not saved:
            return
        for teacher in self._teachers.values():
            own = f'{prefix}{teacher.prefix}.'
            weights = {key[len(own):]: saved.pop(key) for key in list(saved)
                       if key.startswith(own)}
            result = teacher.model.load_state_dict(weights, strict=False)
            missing_keys.extend(own + key for key in result.missing_keys)
            unexpected_keys.extend(own + key for key in result.unexpected_keys)
        unexpected_keys.extend(saved)  # teachers this distiller does not have
