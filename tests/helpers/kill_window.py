"""A test-only hook that holds a training process still at a chosen moment of a checkpoint save
(or right after UPop compresses), so that a test can SIGKILL it exactly there.

A test config adds ``dict(type='KillWindowHook')`` to ``custom_hooks`` and
``'helpers.kill_window'`` to ``custom_imports`` (``tests/`` on ``PYTHONPATH``). The hook reads:

- ``KILL_MARK_DIR``: a folder; the hook writes ``started`` there when training starts,
  ``iter`` (the number of iterations done) after each iteration and ``waiting`` when it holds
  the process;
- ``KILL_WINDOW``: ``<window>:<n>``, hold at the ``n``-th time (in this process) the window
  comes: ``mid_write`` (half of a checkpoint's temporary file written), ``before_replace``
  (temporary file complete, not renamed), ``after_replace`` (checkpoint in place, pointer not
  yet moved), ``after_pointer`` (pointer moved, the outdated checkpoint not yet removed),
  ``after_compression`` (UPop just compressed the model; nothing saved since).

Without ``KILL_WINDOW`` it only writes ``started``.
"""
import os
import os.path as osp
import time

from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

SAVE_WINDOWS = ('mid_write', 'before_replace', 'after_replace', 'after_pointer')


@HOOKS.register_module()
class KillWindowHook(Hook):
    """Hold the process (sleep) at the window ``KILL_WINDOW`` names; see the module."""

    priority = 'NORMAL'  # after UPopHook (ABOVE_NORMAL) in after_train_iter

    def __init__(self):
        self.marks = os.environ.get('KILL_MARK_DIR')
        window = os.environ.get('KILL_WINDOW')
        self.window, self.nth = (window.split(':')[0], int(window.split(':')[1])) \
            if window else (None, 0)
        self.seen = 0
        self.compressed = False

    def _mark(self, name: str, value=None) -> None:
        if self.marks:
            with open(osp.join(self.marks, name), 'w') as f:
                f.write(str(time.time() if value is None else value))

    def _arrived(self, window: str) -> bool:
        """Count ``window``; true at its ``n``-th arrival if it is the one to hold at."""
        if window != self.window:
            return False
        self.seen += 1
        return self.seen == self.nth

    def _hold(self) -> None:
        self._mark('waiting')
        time.sleep(600)

    def before_run(self, runner) -> None:
        if self.window in SAVE_WINDOWS:
            self._patch_saving()

    def before_train(self, runner) -> None:
        self._mark('started')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._mark('iter', runner.iter + 1)
        upop = [h for h in runner.hooks if type(h).__name__ == 'UPopHook']
        if upop and upop[0].compressed and not self.compressed:
            self.compressed = True
            if self._arrived('after_compression'):
                self._hold()

    def _patch_saving(self) -> None:
        hook = self
        put, replace = LocalBackend.put, os.replace

        def put_in_halves(backend, obj, filepath):
            if str(filepath).endswith('.pth.saving') and hook._arrived('mid_write'):
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                hook._hold()
            put(backend, obj, filepath)

        def replace_and_hold(src, dst):
            src = str(src)
            if src.endswith('.pth.saving') and hook._arrived('before_replace'):
                hook._hold()
            replace(src, dst)
            if src.endswith('.pth.saving') and hook._arrived('after_replace'):
                hook._hold()
            if src.endswith('last_checkpoint.saving') and hook._arrived('after_pointer'):
                hook._hold()

        LocalBackend.put = put_in_halves
        os.replace = replace_and_hold
