"""Student modules that come from the teacher named ``teacher``: shared (the teacher's own
frozen modules, their outputs reused) or inherited (the teacher's weights copied at
initialisation)."""
import copy
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import nn

from .taps import Tap, find_submodule
from .teacher import FrozenTeacher


def _check_same_architecture(student: nn.Module, teacher: nn.Module, path: str) -> None:
    theirs = {k: tuple(v.shape) for k, v in teacher.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in student.state_dict().items()}
    if mine != theirs:
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        shown = '; '.join(f'{k}: student {mine.get(k)}, teacher {theirs.get(k)}'
                          for k in differ[:5])
        raise ValueError(
            f"student.{path} and teacher.{path} differ in {len(differ)} weight(s) ({shown}"
            f'{"; ..." if len(differ) > 5 else ""}): only modules of the same architecture '
            'can be shared or inherited.')


class TeacherModules:
    """The student's shared and inherited modules (DWPose's stage 2; FGD's inheriting).

    Shared modules (``shared``) replace the student's own by the teacher's frozen ones: the
    student never trains them, and in a training step their outputs come from the teacher's
    forward pass (:meth:`reused_outputs`) instead of running twice. Inherited modules
    (``inherited``) are the student's own, copied from the teacher once it is initialised
    (:meth:`init_weights`).

    Args:
        student: the student model.
        teacher: the teacher named ``teacher`` (``teacher=``), ``None`` without one.
        shared: module paths shared with the teacher (needs a float32 teacher).
        inherited: module paths whose weights are copied from the teacher.
    """

    def __init__(self, student: nn.Module, teacher: Optional[FrozenTeacher],
                 shared: Sequence[str], inherited: Sequence[str]):
        self.student, self.teacher = student, teacher
        self.shared, self.inherited = list(shared), list(inherited)
        paths = self.shared + self.inherited
        if paths and teacher is None:
            raise ValueError(f"shared_modules/inherit_modules name '{paths[0]}', but the "
                             'distiller has no single teacher (teacher=dict(...)) to take it '
                             'from')
        if self.shared and teacher.dtype != torch.float32:
            raise ValueError(
                f'shared_modules {self.shared} need a float32 teacher: the student runs (and '
                f'exports) the shared modules itself, in float32, but the teacher is '
                f'{teacher.dtype}. Remove teacher.dtype.')
        for path in paths:
            _check_same_architecture(find_submodule(student, path, 'student'),
                                     find_submodule(teacher.model, path, 'teacher'), path)
        for path in self.shared:
            parent, _, name = path.rpartition('.')
            setattr(student.get_submodule(parent), name, teacher.model.get_submodule(path))

    @property
    def taps(self) -> List[Tap]:
        """The teacher taps that record what the shared modules produce."""
        return [Tap(self.teacher.name, path) for path in self.shared]

    def init_weights(self, init_student: Callable[[], None]) -> None:
        """Run ``init_student()``; then give the shared modules back the teacher's weights
        (the student's initialisation reaches them) and copy the inherited ones."""
        kept = {path: copy.deepcopy(self.teacher.model.get_submodule(path).state_dict())
                for path in self.shared}
        init_student()
        for path, state in kept.items():
            self.teacher.model.get_submodule(path).load_state_dict(state)
        for path in self.inherited:
            self.student.get_submodule(path).load_state_dict(
                self.teacher.model.get_submodule(path).state_dict())
            print_log(f'student.{path} initialised from teacher.{path}', logger='current')

    @contextmanager
    def reused_outputs(self, records: Dict[Tap, object]):
        """While active, each shared module returns what it produced in the teacher's pass
        (recorded in ``records``) instead of running again for the student."""
        reused = [(self.teacher.model.get_submodule(tap.path), records[tap])
                  for tap in self.taps if tap in records]
        for module, output in reused:
            module.forward = lambda *args, _output=output, **kwargs: _output
        try:
            yield
        finally:
            for module, _ in reused:
                del module.forward  # back to the class's forward
