"""Stopping a run cleanly: on Ctrl-C (SIGINT) or SIGTERM, or at a time limit."""
from __future__ import annotations

import signal
import sys
import time


class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a request to stop after the current step,
    so the checkpoint written then is consistent (never a half-applied SGD update). A
    second Ctrl-C interrupts at once, as usual.

    With a time limit (seconds from now), passing it is a request to stop too, and no
    epoch is started that would end after it, judged by the last whole epoch's time
    (validation and checkpoints included).
    """

    def __init__(self, time_limit: float | None = None):
        self.signalled = False
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.out_of_time = False          # an epoch was not started for lack of time
        self.epoch_seconds = None         # the last whole epoch's time
        self._epoch_began = None
        self._old = {}

    @property
    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    @property
    def requested(self) -> bool:
        return self.signalled or self.timed_out

    def room_for_an_epoch(self, whole: bool) -> bool:
        """Whether the next epoch (``whole``: from its first step) would end in time;
        also starts its clock."""
        now = time.monotonic()
        if (self.deadline is not None and self.epoch_seconds is not None
                and now + self.epoch_seconds > self.deadline):
            self.out_of_time = True
            return False
        self._epoch_began = now if whole else None
        return True

    def epoch_done(self) -> None:
        if self._epoch_began is not None:
            self.epoch_seconds = time.monotonic() - self._epoch_began

    def _handler(self, signum, frame):
        if self.signalled:
            raise KeyboardInterrupt
        self.signalled = True
        print("\nstopping after this step and saving a checkpoint "
              "(press Ctrl-C again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. called from a notebook thread)
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
