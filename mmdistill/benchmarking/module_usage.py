"""Which leaf modules of a model run in one step: a teacher tapped in its neck does not run
its head, a module shared with the teacher does not run in the student."""
import functools
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from torch import nn


@dataclass
class ModuleUsage:
    """Which leaf modules of a model ran during one step (its data preprocessor left out).

    ``parts`` maps each top-level child (``backbone``, ``neck``, ``head``...) to
    ``(ran, total)``; ``last`` is the last leaf module that started running.
    """
    ran: int
    total: int
    last: Optional[str]
    parts: Dict[str, Tuple[int, int]]

    def __str__(self) -> str:
        return f'{self.ran}/{self.total}'


def leaf_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """The modules of ``model`` without children, by name, its data preprocessor left out."""
    return {name: module for name, module in model.named_modules()
            if name and next(module.children(), None) is None
            and name.split('.')[0] != 'data_preprocessor'}


class _LeavesRun:
    """Note which leaf modules of ``model`` run inside its own calls (``model.forward`` wrapped).

    A leaf counts only while ``model`` itself is being called: a module the student shares
    with the teacher (``Distiller(shared_modules=...)``) and that runs in the teacher's pass
    does not count for the student. A forward *pre*-hook counts a leaf, so that the module
    whose output stops the teacher early (its deepest tap) still counts as run.
    """

    def __init__(self, model: nn.Module):
        self.leaves = leaf_modules(model)
        self.ran: Dict[str, None] = {}  # insertion-ordered set
        self.depth = 0
        # ``model.forward`` is wrapped rather than hooked: a teacher that stops early raises
        # out of its forward, and before torch 2.1 (``always_call``) no forward hook runs then.
        self.model = model
        self.own_forward = model.__dict__.get('forward')  # an instance's own forward, if any
        model.forward = self._counting(model.forward)
        self.handles = [module.register_forward_pre_hook(self._counter(name))
                        for name, module in self.leaves.items()]

    def _counting(self, forward: Callable) -> Callable:

        @functools.wraps(forward)
        def counting_forward(*args, **kwargs):
            self.depth += 1
            try:
                return forward(*args, **kwargs)
            finally:
                self.depth -= 1

        return counting_forward

    def _counter(self, name: str) -> Callable:
        def hook(module, args):
            if self.depth:
                self.ran.setdefault(name)
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        if self.own_forward is None:
            del self.model.forward
        else:
            self.model.forward = self.own_forward

    def usage(self) -> ModuleUsage:
        parts: Dict[str, Tuple[int, int]] = {}
        for name in self.leaves:
            part = name.split('.')[0]
            done, total = parts.get(part, (0, 0))
            parts[part] = (done + (name in self.ran), total + 1)
        return ModuleUsage(ran=len(self.ran), total=len(self.leaves),
                           last=next(reversed(self.ran), None), parts=parts)


def count_modules_run(models: Dict[str, nn.Module],
                      forward: Callable[[], object]) -> Dict[str, ModuleUsage]:
    """Run ``forward()`` once and report, for each of ``models`` (by name), which of its leaf
    modules ran inside its own calls (see :class:`_LeavesRun`)."""
    watched = {name: _LeavesRun(model) for name, model in models.items()}
    try:
        forward()
    finally:
        for leaves_run in watched.values():
            leaves_run.remove()
    return {name: leaves_run.usage() for name, leaves_run in watched.items()}


def joined_usage(usages: Dict[str, ModuleUsage]) -> Optional[ModuleUsage]:
    """The teachers' module usage as one: the single teacher's as it is; several teachers'
    summed, their parts named ``<teacher>.<part>`` (``teachers.det.backbone``)."""
    if len(usages) <= 1:
        return next(iter(usages.values()), None)
    parts = {f'{name}.{part}': counts for name, usage in usages.items()
             for part, counts in usage.parts.items()}
    last = [f'{name}.{usage.last}' for name, usage in usages.items() if usage.last]
    return ModuleUsage(ran=sum(u.ran for u in usages.values()),
                       total=sum(u.total for u in usages.values()),
                       last=last[-1] if last else None, parts=parts)
