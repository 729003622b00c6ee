"""``mmdistill.SafeRunner``: MMEngine's Runner with crash-safe checkpoints and an honest resume.

A config selects it with ``runner_type = 'mmdistill.SafeRunner'``; OpenMMLab train scripts
(mmdistill's ``tools/train.py``, ``mim train``, a codebase's own ``tools/train.py``) then build it
through ``RUNNERS.build(cfg)``. Against MMEngine's Runner it:

- registers :class:`~mmdistill.engine.checkpoint_hook.SafeCheckpointHook` wherever the config
  has a plain ``CheckpointHook`` (MMEngine's default included), with the same arguments;
- resumes without a named file (``resume='auto'``, what ``tools/train.py --resume`` sets, or
  MMEngine's ``resume=True`` without ``load_from``) from ``last_checkpoint`` when it names a
  complete file, and otherwise from the newest complete checkpoint of the work dir, saying which
  and why;
- with nothing to resume, starts from ``load_from`` if the config has one (and says so), and
  otherwise stops with an error naming the work dir: never a silent run from scratch;
- loads every checkpoint inside ``safe_checkpoint_loading(role)`` (role ``'resume'`` or
  ``'load_from'``).
"""
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.runner import Runner

from mmdistill.registry import RUNNERS
from .checkpoint import safe_checkpoint_loading
from .checkpoint_hook import POINTER, SafeCheckpointHook, is_complete_checkpoint

SAFE_HOOK = 'mmdistill.SafeCheckpointHook'
AUTO = 'auto'


def runner_class(cfg: Config, caller: str) -> type:
    """The runner class ``cfg`` will be built with: its ``runner_type`` (a registered name or a
    class), set to ``'mmdistill.SafeRunner'`` (and logged) when the config names none.

    Raises:
        KeyError: ``runner_type`` names no registered runner.
    """
    if 'runner_type' not in cfg:
        cfg.runner_type = 'mmdistill.SafeRunner'
        print_log(f'the config names no runner_type: {caller} runs it with '
                  'mmdistill.SafeRunner (crash-safe checkpoints, exact resume)', logger='current')
    runner_type = cfg.runner_type
    cls = runner_type if isinstance(runner_type, type) else RUNNERS.get(runner_type)
    if cls is None:
        raise KeyError(f"runner_type '{runner_type}' is not a registered runner; use "
                       "'mmdistill.SafeRunner' (or remove runner_type)")
    return cls


def build_runner(cfg: Config, caller: str) -> Runner:
    """``cfg``'s runner, built through the registry as OpenMMLab's train scripts build it
    (``mmdistill.SafeRunner`` where the config names no ``runner_type``; see
    :func:`runner_class`)."""
    runner_class(cfg, caller)
    return RUNNERS.build(cfg)


def train_with_safe_loading(runner: Runner) -> None:
    """``runner.train()`` with every checkpoint it loads read weights-only: a
    :class:`SafeRunner` does that itself; any other runner trains inside
    :func:`safe_checkpoint_loading`."""
    if isinstance(runner, SafeRunner):
        runner.train()
        return
    with safe_checkpoint_loading('resume' if runner.cfg.get('resume') else 'load_from'):
        runner.train()


class NothingToResumeError(FileNotFoundError):
    """``--resume`` found no checkpoint in the work dir and the config has no ``load_from``."""


@RUNNERS.register_module()
class SafeRunner(Runner):
    """MMEngine's ``Runner`` with :class:`SafeCheckpointHook` in place of ``CheckpointHook``
    and a resume that finds the newest complete checkpoint or says why it cannot; see
    :mod:`mmdistill.engine.runner`. ``resume`` takes ``'auto'`` besides MMEngine's booleans:
    resume from the work dir, and keep ``load_from`` as the start point when there is nothing
    to resume."""

    _loading_role = 'load_from'

    # ------------------------------------------------------------------------ hooks
    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        default_hooks = dict(default_hooks or {})
        # MMEngine registers CheckpointHook(interval=1) when the config names none
        default_hooks.setdefault('checkpoint', dict(type='CheckpointHook', interval=1))
        default_hooks = {name: self._made_safe(hook, f'default_hooks.{name}')
                         for name, hook in default_hooks.items()}
        custom_hooks = [self._made_safe(hook, f'custom_hooks[{i}]')
                        for i, hook in enumerate(custom_hooks or [])]
        super().register_hooks(default_hooks, custom_hooks)

    def _made_safe(self, hook, place: str):
        """``hook``, or a copy of its config with the safe type if it is a plain
        ``CheckpointHook``."""
        if not isinstance(hook, dict):
            return hook
        hook_type = hook.get('type')
        cls = MMENGINE_HOOKS.get(hook_type) if isinstance(hook_type, str) else hook_type
        if cls is CheckpointHook:
            self.logger.info(f"{place}: CheckpointHook replaced by {SAFE_HOOK} with the same "
                             'arguments (atomic saves, random state saved for exact resume)')
            return {**hook, 'type': SAFE_HOOK}
        if isinstance(cls, type) and issubclass(cls, CheckpointHook) and \
                not issubclass(cls, SafeCheckpointHook):
            self.logger.warning(f'{place}: {cls.__name__} is a CheckpointHook subclass that '
                                f'{SAFE_HOOK} cannot stand in for: its saves are not '
                                'crash-safe and hold no random state')
        return hook

    # ------------------------------------------------------------------- loading
    def load_checkpoint(self, filename: str, *args, **kwargs):
        with safe_checkpoint_loading(self._loading_role):
            return super().load_checkpoint(filename, *args, **kwargs)

    def resume(self, filename: str, *args, **kwargs) -> None:
        self._loading_role = 'resume'
        try:
            super().resume(filename, *args, **kwargs)
        finally:
            self._loading_role = 'load_from'

    def load_or_resume(self) -> None:
        """Resume (from the named file, or the newest complete checkpoint of the work dir),
        or load ``load_from``, or, asked to resume with neither, stop with an error."""
        if self._has_loaded:
            return
        if not self._resume:
            if self._load_from is not None:
                self.load_checkpoint(self._load_from)
            return
        if self._resume is True and self._load_from is not None:
            self.resume(self._load_from)  # MMEngine's meaning: resume from this file
            return
        found = self.find_resumable_checkpoint()
        if found is not None:
            self.resume(found)
            return
        fallback = self._load_from if self._resume == AUTO else None
        if fallback is None:
            raise NothingToResumeError(
                f'asked to resume, but {self.work_dir} holds no checkpoint to resume from (no '
                f'{POINTER} naming a complete file, no complete checkpoint) and the config has '
                'no load_from: nothing to resume. Start a new run without --resume, or resume '
                'from a file with --resume PATH.')
        self.logger.warning(f'nothing to resume in {self.work_dir} (no checkpoint yet): '
                            f'starting from load_from = {fallback}')
        self.load_checkpoint(fallback)

    def find_resumable_checkpoint(self) -> Optional[str]:
        """The checkpoint to resume from: the one ``last_checkpoint`` names if it is complete
        and no complete checkpoint of a later step is beside it, else the newest complete
        checkpoint by step; ``None`` if there is none. The choice is logged with its reason."""
        pointer = osp.join(self.work_dir, POINTER)
        named = None
        if osp.isfile(pointer):
            with open(pointer) as f:
                named = f.read().strip() or None
        steps = self._step_checkpoints()
        newest = steps[-1][1] if steps else None
        if named is not None and is_complete_checkpoint(named):
            step = dict((osp.abspath(p), s) for s, p in steps).get(osp.abspath(named))
            if newest is None or step is None or step == steps[-1][0]:
                self.logger.info(f'resuming from {named} ({POINTER} names it)')
                return named
            self.logger.warning(f'{POINTER} names {named}, but {newest} is complete and newer '
                                '(a save ended before the pointer moved): resuming from it')
            return newest
        if named is None:
            why = f'{pointer} is missing' if not osp.isfile(pointer) else f'{pointer} is empty'
        else:
            why = f'{pointer} names {named}, which is missing or incomplete'
        if newest is None:
            self.logger.warning(f'{why}, and no complete checkpoint is in the work dir')
            return None
        self.logger.warning(f'{why}: resuming from the newest complete checkpoint, {newest}')
        return newest

    def _step_checkpoints(self) -> List[Tuple[int, str]]:
        hooks = [hook for hook in self.hooks if isinstance(hook, SafeCheckpointHook)]
        return hooks[0].step_checkpoints(self) if hooks else []
