"""The epoch's progress: a tqdm bar with an ETA in a terminal, one plain line otherwise.

In a terminal the bar redraws in place and shows the elapsed time, the time left
(from tqdm's smoothed rate) and the running statistics the loop passes:

    epoch 3/30:  40%|██████▍         | 14/36 [00:04<00:06, loss 1.7043 | err 68.60% | img/s 1776]

When the output is not a terminal (a log file, CI, a notebook capturing stderr),
nothing is drawn while the epoch runs; ``close`` returns one plain line per epoch, which
the loop prints, so logs stay readable (and tests and notebooks can read them):

    epoch 3/30 [########################] 36/36 | loss 1.7043 | err 68.60% | val_err 51.20% | lr 0.02 | img/s 1776 | 3s

Only the display is here: the numbers come from the loop and do not depend on it.
"""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


class ProgressBar:
    """``update(n, **stats)`` after step n of ``total``; ``close(**stats)`` at the end
    of the epoch returns the plain line. ``live``: whether a bar is drawn (by default,
    when ``stream`` is a terminal)."""

    def __init__(self, total: int, desc: str = "", width: int = 24, stream=None,
                 enabled: bool | None = None, min_interval: float = 0.1):
        self.total, self.desc, self.width = max(1, total), desc, width
        self.stream = stream or sys.stderr
        self.live = (self.stream.isatty() if enabled is None else enabled)
        self.start = time.perf_counter()
        self.n = 0
        self._bar = None
        if self.live:
            # The bar follows the terminal's width; a terminal that reports no size
            # (0 x 0, as some pseudo-terminals do) would make tqdm draw nothing.
            sized = all(_terminal_size(self.stream))
            self._bar = tqdm(total=self.total, desc=desc, file=self.stream,
                             mininterval=min_interval, dynamic_ncols=sized,
                             ncols=None if sized else 100, nrows=None if sized else 24,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}<{remaining}{postfix}]")

    def update(self, n: int, **stats):
        if self._bar is not None:
            if self.n == 0 and n > 1:
                # A resumed epoch starts at its saved step: count the rate (and so the
                # ETA) from there, not as if the skipped steps took no time.
                self._bar.n = self._bar.last_print_n = n - 1
            self._bar.set_postfix_str(_stats(stats), refresh=False)
            self._bar.update(n - self._bar.n)
        self.n = n

    def close(self, **stats) -> str:
        if self._bar is not None:
            self._bar.set_postfix_str(_stats(stats), refresh=False)
            self._bar.update(self.n - self._bar.n)
            self._bar.close()               # draws the final state and ends the line
            self._bar = None
        return self._line(stats)

    def _line(self, stats) -> str:
        frac = min(1.0, self.n / self.total)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        parts = [f"{self.desc} [{bar}] {self.n}/{self.total}"]
        parts += [f"{k} {v}" for k, v in stats.items()]
        parts.append(f"{elapsed:.0f}s")
        return " | ".join(parts)


def _stats(stats) -> str:
    return " | ".join(f"{k} {v}" for k, v in stats.items())


def _terminal_size(stream) -> tuple[int, int]:
    """(columns, lines) of the terminal ``stream`` writes to; (0, 0) when unknown."""
    try:
        return tuple(os.get_terminal_size(stream.fileno()))
    except (AttributeError, OSError, ValueError):
        return 0, 0
