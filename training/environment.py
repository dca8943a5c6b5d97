"""Where a result came from: the code's version, the libraries and the machine.

train.py keeps this in every metrics.json, so that two runs with the same settings
that disagree can be told apart (the engine changed between them, or the machine), and
a figure can be quoted with the machine it came from.
"""
from __future__ import annotations

import os
import platform
import subprocess

import numpy as np

from engine.parallel import blas_info, num_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> str:
    """The CPU model, its logical cores and the OS, e.g. 'AMD EPYC, 2 logical cores,
    Linux x86_64'."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def code_version(root: str = ROOT) -> str | None:
    """The git commit of the checkout this code runs from, with '+changes' where
    tracked files differ from it; None outside a git checkout (or without git)."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")


def environment(device: str = "cpu") -> dict:
    """The code version, Python, NumPy, the BLAS (and CuPy with its GPU on 'cuda') and
    the machine.

    ``blas`` lists the BLAS libraries threadpoolctl found, e.g. [{'library': 'openblas',
    'version': '0.3.31', 'threading_layer': 'pthreads', 'threads': 2}] (their own thread
    count); ``threads`` is how many threads the CPU ops split over (engine/parallel.py),
    each calling BLAS on one thread. Both bear on a run's speed and, through the order
    of its float additions, on the last bits of its numbers.
    """
    env = dict(code=code_version(), python=platform.python_version(),
               numpy=np.__version__, blas=blas_info(), threads=num_threads(),
               machine=machine())
    if device == "cuda":
        from engine.backend import cupy_module, gpu_status
        cp = cupy_module()
        env.update(cupy=getattr(cp, "__version__", None), gpu=gpu_status()[1])
    return env
