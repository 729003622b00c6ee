"""Crash-safe checkpoints and exact resume: :class:`SafeCheckpointHook`.

MMEngine 0.10.7's ``CheckpointHook`` deletes the oldest checkpoint (``max_keep_ckpts``) and the
previous best one *before* it writes the new file, writes the file in place, then rewrites
``last_checkpoint`` in place: a kill in between leaves a work dir that cannot be resumed. Its
checkpoints hold no random state either, so a resumed run draws other random numbers (crops,
dropout) than the uninterrupted run. This hook keeps MMEngine's arguments and file names and:

1. writes every checkpoint to ``<name>.saving`` beside its final name, fsyncs it and renames it
   into place (``os.replace``: the file is complete or absent);
2. then replaces ``last_checkpoint`` the same way, so the pointer only ever names a complete file;
3. only then removes the checkpoints it no longer keeps (``max_keep_ckpts``, the previous best);
4. stores every process's random state (Python, numpy, torch CPU and CUDA, the train dataloader's
   and its sampler's own generators where they have one) in each checkpoint and restores it when
   the run resumes from that checkpoint;
5. keeps validation from drawing from training's random stream: the state is saved before a
   validation run and put back after it (an uninterrupted run validates after its save, a
   resumed run does not: without this the two streams would part there).

Leftover ``*.saving`` files of a killed save are removed when training starts. Remote storage
backends (no atomic rename) keep MMEngine's behaviour, with a warning.
"""
import glob
import os
import os.path as osp
import random
import re
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.runner import IterBasedTrainLoop

from mmdistill.registry import HOOKS

SAVING_SUFFIX = '.saving'
POINTER = 'last_checkpoint'


def capture_rng_state(dataloader=None) -> dict:
    """The state of every random generator this process draws from, in types that a
    weights-only ``torch.load`` reads back (ints, tuples, tensors): Python's ``random``, numpy's
    global generator, torch's CPU generator, every CUDA device's generator (where CUDA is
    available), and ``dataloader``'s and its sampler's own ``torch.Generator`` where they have
    one (worker seeds are drawn from the dataloader's generator, or torch's global one)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
               float(cached_gaussian)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    for name, generator in _own_generators(dataloader):
        state[name] = generator.get_state()
    return state


def restore_rng_state(state: dict, dataloader=None) -> None:
    """Put back a state that :func:`capture_rng_state` captured (its tensors may have been
    loaded onto a GPU: ``Runner.resume`` maps checkpoints to the run's device)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached_gaussian = state['numpy']
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss,
                         cached_gaussian))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
    for name, generator in _own_generators(dataloader):
        if name in state:
            generator.set_state(state[name].cpu())


def _own_generators(dataloader):
    """``(name, generator)`` for the dataloader's and its sampler's own ``torch.Generator``."""
    owners = (('dataloader_generator', dataloader),
              ('sampler_generator', getattr(dataloader, 'sampler', None)))
    for name, owner in owners:
        generator = getattr(owner, 'generator', None)
        if isinstance(generator, torch.Generator):
            yield name, generator


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a checkpoint ``torch.save`` finished writing: a zip archive whose
    central directory (written last) reads and which holds a pickle. A file cut short by a
    kill, an empty file or a directory is not."""
    import zipfile
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _fsync_file(path: str) -> None:
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_atomically(write: Callable[[str], None], path: str) -> None:
    """``write(temporary)`` writes the content to a temporary name beside ``path``; it is then
    fsynced and renamed to ``path`` in one step, so ``path`` is the old file or the new one,
    never a part."""
    temporary = path + SAVING_SUFFIX
    write(temporary)
    _fsync_file(temporary)
    os.replace(temporary, path)
    _fsync_dir(osp.dirname(osp.abspath(path)))


def write_pointer(work_dir: str, checkpoint: str) -> None:
    """Replace ``work_dir/last_checkpoint`` atomically with the path ``checkpoint``."""
    def write(temporary):
        with open(temporary, 'w') as f:
            f.write(checkpoint)
    replace_atomically(write, osp.join(work_dir, POINTER))


class _DeferredRemovals:
    """A file backend whose ``remove``/``rmtree`` only note the path; :meth:`flush` removes them
    later (everything else goes to the wrapped backend)."""

    def __init__(self, backend):
        self.backend = backend
        self.paths: List[str] = []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def remove(self, path):
        self.paths.append(path)

    def rmtree(self, path):
        self.paths.append(path)

    def flush(self, keep: Optional[str]) -> None:
        """Remove the noted paths, but never ``keep`` (the file ``last_checkpoint`` names)."""
        for path in self.paths:
            if path != keep:
                _remove(path)


def _remove(path: str) -> None:
    if osp.isdir(path):
        import shutil
        shutil.rmtree(path)
    elif osp.exists(path):
        os.remove(path)


class _SavesThroughHook:
    """The runner, with ``save_checkpoint`` going through :meth:`SafeCheckpointHook._write`:
    what MMEngine's own saving code (``_save_best_checkpoint``) is given instead of the
    runner."""

    def __init__(self, runner, hook: 'SafeCheckpointHook'):
        self._runner = runner
        self._hook = hook

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def save_checkpoint(self, out_dir, filename, file_client_args=None, backend_args=None,
                        **kwargs):
        self._hook._write(self._runner, filename, **kwargs)  # to the hook's out_dir, backend


class _RestoreBeforeFirstBatch:
    """Wraps an iteration-based loop's dataloader iterator on resume: MMEngine fetches (and
    discards) the ``skip`` batches trained before the checkpoint, drawing random numbers for
    their augmentation; the saved random state is put back after them, right before the first
    batch that is trained again."""

    def __init__(self, iterator: Iterator, skip: int, restore: Callable[[], None]):
        self._iterator = iterator
        self._skip = skip
        self._restore: Optional[Callable[[], None]] = restore

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0 and self._restore is not None:
            self._restore()
            self._restore = None
        self._skip -= 1
        return next(self._iterator)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` (same arguments, same files) made crash-safe and with the
    random state in every checkpoint, so that kill + resume continues the uninterrupted run
    exactly; see :mod:`mmdistill.engine.checkpoint_hook` for what it does in which order."""

    def __init__(self, *args, out_dir=None, **kwargs):
        super().__init__(*args, out_dir=out_dir, **kwargs)
        self._configured_out_dir = out_dir
        self._atomic = True
        self._gathered_rng: Optional[list] = None  # the states the next save stores
        self._before_val_rng: Optional[dict] = None
        self._training = False
        self._resumed_rng: Optional[tuple] = None  # (states, epoch, iter) of a loaded file

    # ------------------------------------------------------------------ where and what
    def checkpoint_dir(self, runner) -> str:
        """The folder this hook writes checkpoints to (known before ``before_train``)."""
        out_dir = self._configured_out_dir or runner.work_dir
        if out_dir != runner.work_dir:
            out_dir = osp.join(out_dir, osp.basename(runner.work_dir.rstrip(osp.sep)))
        return out_dir

    def step_checkpoints(self, runner) -> List[Tuple[int, str]]:
        """``(step, path)`` of the complete step checkpoints (``epoch_N.pth``/``iter_N.pth``
        by ``filename_tmpl``) in :meth:`checkpoint_dir`, oldest first."""
        directory = self.checkpoint_dir(runner)
        pattern = re.compile('^' + re.escape(self.filename_tmpl).replace(r'\{\}', r'(\d+)') + '$')
        found = []
        for path in glob.glob(osp.join(directory, '*')):
            match = pattern.match(osp.basename(path))
            if match and is_complete_checkpoint(path):
                found.append((int(match.group(1)), path))
        return sorted(found)

    # --------------------------------------------------------------------- start
    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._training = True
        self._atomic = isinstance(self.file_backend, LocalBackend)
        if not self._atomic:
            runner.logger.warning(
                f'SafeCheckpointHook: {self.out_dir} is not a local folder; checkpoints there '
                'are written as MMEngine writes them (no atomic rename), random states are '
                'still saved')
        elif is_main_process():
            for directory in {self.out_dir, runner.work_dir}:
                for stale in glob.glob(osp.join(directory, '*' + SAVING_SUFFIX)):
                    runner.logger.info(f'removing {stale}, left by a save that was killed')
                    _remove(stale)
        self._restore_resumed_rng(runner)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Note the checkpoint's random states; :meth:`before_train` restores them if the run
        resumed from it (``load_from`` alone restores nothing)."""
        meta = checkpoint.get('meta', {})
        self._resumed_rng = (checkpoint.get('rng_states'), meta.get('epoch'), meta.get('iter'))

    def _restore_resumed_rng(self, runner) -> None:
        if self._resumed_rng is None:
            return
        states, epoch, iteration = self._resumed_rng
        self._resumed_rng = None
        if (epoch, iteration) != (runner.epoch, runner.iter):
            return  # loaded with load_from: the run starts at 0, nothing to continue
        if states is None:
            runner.logger.warning(
                'the resumed checkpoint holds no random state (a plain CheckpointHook wrote '
                'it): the run continues, but draws other random numbers (augmentation, '
                'dropout) than the uninterrupted run would have')
            return
        if len(states) != get_world_size():
            runner.logger.warning(
                f'the resumed checkpoint holds the random states of {len(states)} processes, '
                f'this run has {get_world_size()}: random states are not restored, the run '
                'is not an exact continuation')
            return
        state = states[get_rank()]

        def restore():
            restore_rng_state(state, runner.train_dataloader)
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and runner.iter > 0:
            loop.dataloader_iterator = _RestoreBeforeFirstBatch(
                loop.dataloader_iterator, runner.iter, restore)
        else:
            restore()
        runner.logger.info('restored the random state of the resumed checkpoint')

    # ---------------------------------------------------------------- validation
    def after_train(self, runner) -> None:
        super().after_train(runner)
        self._training = False

    def before_val(self, runner) -> None:
        if self._training:
            self._before_val_rng = capture_rng_state(runner.train_dataloader)

    def after_val(self, runner) -> None:
        if self._before_val_rng is not None:
            restore_rng_state(self._before_val_rng, runner.train_dataloader)
            self._before_val_rng = None

    # --------------------------------------------------------------------- saving
    def save_now(self, runner) -> None:
        """Write the current step's checkpoint now, as an interval save would (name,
        ``max_keep_ckpts``, pointer, random state), for a hook that has just changed the model
        in a way a resume from an older checkpoint would have to redo (UPop's compression).
        Call it on every process from ``after_train_epoch`` (``by_epoch``) or
        ``after_train_iter``; an interval save of the same step later rewrites the same file."""
        runner.logger.info('saving a checkpoint now, as a hook asked')
        self._save_checkpoint(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._gathered_rng is not None:
            checkpoint['rng_states'] = self._gathered_rng

    def _write(self, runner, filename: str, **save_args) -> None:
        """Every process: gather the random states; the main process: write ``filename`` in
        the checkpoint folder through ``runner.save_checkpoint`` (to a temporary name, then
        fsync and rename)."""
        state = self._before_val_rng or capture_rng_state(runner.train_dataloader)
        self._gathered_rng = all_gather_object(state)
        try:
            if not self._atomic:
                runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                                       backend_args=self.backend_args, **save_args)
            elif is_main_process():
                replace_atomically(
                    lambda temporary: runner.save_checkpoint(
                        self.out_dir, osp.basename(temporary), self.file_client_args,
                        backend_args=self.backend_args, **save_args),
                    osp.join(self.out_dir, filename))
        finally:
            self._gathered_rng = None

    def _save_checkpoint_with_step(self, runner, step, meta):
        """Write checkpoint ``step``, then the pointer to it, then remove the outdated one."""
        runner = getattr(runner, '_runner', runner)  # called from _save_best_checkpoint
        if not self._atomic:
            super()._save_checkpoint_with_step(_SavesThroughHook(runner, self), step, meta)
            return
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.filename_tmpl.format(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write(runner, filename, save_optimizer=self.save_optimizer,
                    save_param_scheduler=self.save_param_scheduler, meta=meta,
                    by_epoch=self.by_epoch, **self.args)
        if is_main_process():
            write_pointer(runner.work_dir, self.last_ckpt)
            if outdated is not None and outdated != filename:
                _remove(self.file_backend.join_path(self.out_dir, outdated))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """MMEngine's best-checkpoint logic, with its file written atomically and the previous
        best removed only after the new one (and the pointer) are in place."""
        saves = _SavesThroughHook(runner, self)
        if not self._atomic:
            super()._save_best_checkpoint(saves, metrics)
            return
        deferred = _DeferredRemovals(self.file_backend)
        self.file_backend = deferred
        try:
            super()._save_best_checkpoint(saves, metrics)
        finally:
            self.file_backend = deferred.backend
        deferred.flush(keep=self.last_ckpt)

