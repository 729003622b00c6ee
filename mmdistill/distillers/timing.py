"""Timing the teacher's forward pass without stalling the device."""
import time
from contextlib import contextmanager
from typing import Optional, Tuple

import torch


class ForwardTimer:
    """Seconds that a block of work takes, kept in :attr:`seconds`.

    On the CPU it is wall-clock time. On CUDA, work is queued, so two CUDA events are recorded
    around the block and read one call later, when the device has finished it: waiting for the
    device would slow training down. :attr:`seconds` is then the previous call's time (0 after
    the first call).
    """

    def __init__(self):
        self.seconds = 0.0
        self._pending: Optional[Tuple[torch.cuda.Event, torch.cuda.Event]] = None

    @contextmanager
    def measure(self, device: torch.device):
        if device.type != 'cuda':
            start = time.perf_counter()
            yield
            self.seconds = time.perf_counter() - start
            return
        events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        events[0].record()
        yield
        events[1].record()
        if self._pending is not None:
            begin, end = self._pending
            end.synchronize()  # long done: the device has moved on to this step
            self.seconds = begin.elapsed_time(end) / 1000.0
        self._pending = events
