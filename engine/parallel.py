"""Splitting the CPU work of an op over the cores (NumPy only; a no-op on CuPy).

Why threads help: NumPy's elementwise loops (ReLU, LRN, pooling, the copies of
im2col and col2im) run on one core, and they release the GIL. Two Python threads,
each running the same NumPy code on half of the batch, run on two cores at once.

Why the matrix products are split too, with BLAS kept to one thread inside each
piece: OpenBLAS threads a product itself, but it synchronises its threads once per
block of the inner dimension (a few hundred values). conv's dw = cols @ dout.T has
N*OH*OW as its inner dimension (131072 for the mini net's conv1), so that is hundreds
of barriers per product. When other processes compete for the cores, a thread that
lost its core stalls the others at every barrier for a scheduler time slice, and a
product of milliseconds can take seconds. Split over our own threads, each calling a
one-thread BLAS, a product has a single barrier (the join), and a piece is handed to
whichever thread is free.

    run_parallel(fn, n, xp)     # fn(lo, hi) for pieces of range(n), in parallel
    matmul(a, b)                # a @ b, cut into blocks run the same way

Every thread, the calling one included, takes the next piece until none is left,
so no core sits idle while another still has pieces queued.

On CuPy, or with one thread, ``run_parallel`` is a plain ``fn(0, n)``: the code of
an op is the same on both backends. ``set_num_threads(1)`` turns the threading off
(tests use it to compare both paths); the environment variable
``ALEXNET_NUM_THREADS`` sets the default.
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from engine.backend import get_array_module

_state = {"threads": None, "pool": None}
_local = threading.local()        # .inside: this thread is running a piece already


def num_threads() -> int:
    """Threads used for NumPy work: ALEXNET_NUM_THREADS, else the usable CPU count."""
    if _state["threads"] is None:
        env = os.environ.get("ALEXNET_NUM_THREADS")
        try:
            cores = len(os.sched_getaffinity(0))   # the cores this process may run on
        except AttributeError:                      # not on Linux
            cores = os.cpu_count() or 1
        if env:
            try:
                n = int(env)
            except ValueError:
                n = 0
            if n < 1:
                raise ValueError(f"ALEXNET_NUM_THREADS must be a whole number of threads, "
                                 f"1 or more, got {env!r}")
            _state["threads"] = n
        else:
            _state["threads"] = max(1, cores)
    return _state["threads"]


def set_num_threads(n: int) -> int:
    """Set the number of threads for NumPy work; returns the previous value."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    old = num_threads()
    if n != old and _state["pool"] is not None:
        _state["pool"].shutdown(wait=True)
        _state["pool"] = None
    _state["threads"] = n
    return old


@contextmanager
def threads(n: int):
    """``with threads(1): ...`` runs the block with n threads, then restores."""
    old = set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


def _pool():
    if _state["pool"] is None:
        # The calling thread runs a piece itself, so the pool needs one thread fewer.
        _state["pool"] = ThreadPoolExecutor(max_workers=num_threads() - 1,
                                            thread_name_prefix="alexnet-cpu")
    return _state["pool"]


def split(n: int, pieces: int):
    """``pieces`` contiguous (lo, hi) ranges covering range(n), sizes differing by <= 1."""
    pieces = max(1, min(pieces, n))
    q, r = divmod(n, pieces)
    bounds = [i * q + min(i, r) for i in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# Below this many array elements an op runs on one thread: handing pieces to another
# thread costs tens of microseconds, and below a few MB two cores do not copy faster
# than one.
MIN_PARALLEL_SIZE = 1 << 20


def run_parallel(fn, n: int, xp=np, size: int | None = None, pieces_per_thread: int = 2,
                 piece_size: int | None = None):
    """Call ``fn(lo, hi)`` for contiguous pieces of range(n); in parallel on NumPy.

    ``fn`` must write disjoint parts of its outputs for disjoint ranges (and return
    nothing, or something the caller collects per piece: the results come back as a
    list in range order). ``size``, the number of array elements the op touches,
    keeps small ops on one thread. More pieces than threads (``pieces_per_thread``)
    let a thread that got its core back take over the work of one that lost it.
    ``piece_size`` (elements, with ``size``) asks for pieces at most about that big,
    even on one thread: an op that makes several passes over its piece then finds
    it in the CPU's cache from the second pass on.
    """
    n_threads = num_threads()
    pieces = n_threads * pieces_per_thread
    if piece_size is not None and size is not None:
        pieces = max(pieces, -(-size // piece_size))
    if xp is not np or n < 2 or getattr(_local, "inside", False):
        return [fn(0, n)]
    if n_threads == 1 or (size is not None and size < MIN_PARALLEL_SIZE):
        if piece_size is None or size is None or size <= piece_size:
            return [fn(0, n)]
        return [fn(lo, hi) for lo, hi in split(n, pieces)]
    ranges = split(n, pieces)
    results = [None] * len(ranges)
    next_piece = itertools.count()    # next() on it is atomic under the GIL

    def work():
        # Every thread, the calling one included, takes the next piece until none is
        # left: a thread that is slow (or lost its core) simply does fewer pieces.
        _local.inside = True          # a nested run_parallel runs serially, no deadlock
        try:
            for i in iter(next_piece.__next__, None):
                if i >= len(ranges):
                    return
                results[i] = fn(*ranges[i])
        finally:
            _local.inside = False

    with single_threaded_blas():
        futures = [_pool().submit(work) for _ in range(n_threads - 1)]
        try:
            work()
        finally:
            for f in futures:
                f.result()            # waits for all; re-raises a worker's exception
    return results


# Below this many multiply-adds a product runs in one piece, on one thread: waking
# OpenBLAS's threads costs far more than a small product such as fc8's
# (128 x 1024 x 10) takes on one.
MIN_PARALLEL_MACS = 1 << 22


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays. On NumPy the result is cut into column (or row)
    blocks, one product per block, spread over the threads with one-thread BLAS
    (see the module docstring); small products run on one thread. On CuPy: a @ b.

    ``out``, if given, receives the result (any strides BLAS accepts, e.g. a block
    of a larger array).
    """
    xp = get_array_module(a, b)
    if xp is not np:
        return xp.matmul(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if m * n * k < MIN_PARALLEL_MACS or num_threads() == 1 or getattr(_local, "inside", False):
        with single_threaded_blas():
            np.matmul(a, b, out=out)
        return out
    # Cut along the longer side of the result, so that each block stays a
    # well-shaped product (a block of 32 rows of a 128-row result is not).
    if n >= m:
        run_parallel(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), n)
    else:
        run_parallel(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), m)
    return out


# ---------------------------------------------------------------------------- BLAS
# threadpoolctl finds the BLAS that NumPy loaded, whatever it is (OpenBLAS from a NumPy
# wheel or from the system, MKL from conda, BLIS) and sets its thread count at run time.
# It is a process-wide setting, so it is changed only for the duration of a parallel
# region and restored after. The libraries are looked up once: the set and get calls
# in the region are then plain calls into the library, cheap enough for every product.

_blas = {"libs": None}
_blas_lock = threading.Lock()
_blas_depth = [0, None]           # nesting depth, saved thread counts (one per library)


def _blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries loaded in this process."""
    if _blas["libs"] is None:
        with _blas_lock:
            if _blas["libs"] is None:
                from threadpoolctl import ThreadpoolController
                _blas["libs"] = list(ThreadpoolController().select(user_api="blas")
                                     .lib_controllers)
    return _blas["libs"]


def blas_controllable() -> bool:
    """True when this NumPy's BLAS thread count can be set (threadpoolctl found it)."""
    return bool(_blas_libraries())


def blas_info() -> list[dict]:
    """The BLAS libraries loaded, each as {'library', 'version', 'threading_layer',
    'threads'}: e.g. OpenBLAS 0.3.31 on pthreads with 2 threads. ``threads`` is the
    library's own count outside the parallel regions; inside them each call runs on one
    thread, and the ops' pieces run on ``num_threads()`` threads of ours."""
    return [dict(library=lib.internal_api, version=lib.version,
                 threading_layer=getattr(lib, "threading_layer", None),
                 threads=lib.num_threads)
            for lib in _blas_libraries()]


@contextmanager
def single_threaded_blas():
    """Within the block, BLAS runs on one thread per call (if it can be told so)."""
    libs = _blas_libraries()
    if not libs:
        yield
        return
    with _blas_lock:
        if _blas_depth[0] == 0:
            _blas_depth[1] = [lib.num_threads for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _blas_depth[0] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth[0] -= 1
            if _blas_depth[0] == 0:
                for lib, n in zip(libs, _blas_depth[1]):
                    lib.set_num_threads(n)
