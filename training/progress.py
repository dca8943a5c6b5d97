"""A small progress bar (no dependency): one line that redraws in a terminal.

When the output is not a terminal (a log file, CI, a notebook capturing stderr),
only the final line of each epoch is printed, so logs stay readable.
"""
from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, total: int, desc: str = "", width: int = 24, stream=None,
                 enabled: bool | None = None, min_interval: float = 0.1):
        self.total, self.desc, self.width = max(1, total), desc, width
        self.stream = stream or sys.stderr
        self.live = (self.stream.isatty() if enabled is None else enabled)
        self.min_interval = min_interval
        self.start = time.perf_counter()
        self._last = 0.0
        self.n = 0

    def update(self, n: int, **stats):
        self.n = n
        now = time.perf_counter()
        if self.live and (now - self._last >= self.min_interval or n >= self.total):
            self._last = now
            self.stream.write("\r" + self._line(stats))
            self.stream.flush()

    def close(self, **stats) -> str:
        line = self._line(stats)
        if self.live:
            self.stream.write("\r" + line + "\n")
            self.stream.flush()
        return line

    def _line(self, stats) -> str:
        frac = min(1.0, self.n / self.total)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        parts = [f"{self.desc} [{bar}] {self.n}/{self.total}"]
        parts += [f"{k} {v}" for k, v in stats.items()]
        parts.append(f"{elapsed:.0f}s")
        return " | ".join(parts)
