"""The machine's float32 FMA peak: the most GFLOP/s its cores can do at all.

    python -m bench.peak            # on as many threads as our engine uses
    python -m bench.peak 1

A convolution or a matrix product is, at the bottom, a stream of fused multiply-adds
(FMA: a*b + c, 2 flops, rounded once). A core issues a fixed number of FMA
instructions per cycle (Zen 4: two 256-bit units, which run an AVX-512 instruction
in two halves; Skylake-X server parts: two 512-bit units), each on a whole vector of
floats. So no code can do more than

    cores * GHz * (FMA instructions per cycle) * (floats per vector) * 2

flops per second; every load, store, shuffle or wait for memory only takes cycles
away from the FMAs. This module measures that limit rather than trusting a data
sheet: it compiles a tiny C loop with ``cc -O2 -march=native`` (so it gets the
widest vectors the compiler targets here: 512 bits where ``__AVX512F__`` is defined,
else 256 with AVX, else 128), which keeps 12 independent accumulators busy (enough
to hide the 4-cycle latency of an FMA on two units) and does nothing but FMAs. The
number of FMAs is known exactly; the loop's result is returned, so the compiler
cannot drop the work. It runs on ``threads`` OS threads at once (ctypes releases the
GIL during the call), and the best of a few short runs is the peak.

Each thread's rate is its FMAs over its own CPU time (time.thread_time), so the peak
is what the cores do while they run the loop, even where other processes share them
(on a shared machine they often do); the rate by the wall clock, which such sharing
lowers, is kept beside it.

flops per cycle per core = peak / (threads * GHz) checks the figure against the
architecture: 32 where AVX-512 runs on 256-bit units (Zen 4) or for AVX2 on two
units, 64 with two 512-bit FMA units. The GHz is /proc/cpuinfo's 'cpu MHz', which on
a virtual machine is often the nominal clock: a core that turbos above it reads more
than the architecture's figure in proportion (Zen 4 at 3.7 GHz, nominal 2.6: 45).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

ACCUMULATORS = 12       # x86 has 16 (AVX2) or 32 (AVX-512) vector registers

C_SOURCE = r"""
#if defined(__AVX512F__)
#define WIDTH 64
#elif defined(__AVX__)
#define WIDTH 32
#else
#define WIDTH 16
#endif
typedef float vf __attribute__((vector_size(WIDTH)));

int fma_lanes(void) { return WIDTH / sizeof(float); }

/* n * 12 * fma_lanes() fused multiply-adds, 12 independent chains. */
float fma_loop(long n, float m, float c) {
    vf vm = {0}, vc = {0};
    vm += m; vc += c;
    vf a0 = vc, a1 = vc + 1, a2 = vc + 2, a3 = vc + 3, a4 = vc + 4, a5 = vc + 5,
       a6 = vc + 6, a7 = vc + 7, a8 = vc + 8, a9 = vc + 9, a10 = vc + 10, a11 = vc + 11;
    for (long i = 0; i < n; i++) {
        a0 = a0 * vm + vc; a1 = a1 * vm + vc; a2 = a2 * vm + vc; a3 = a3 * vm + vc;
        a4 = a4 * vm + vc; a5 = a5 * vm + vc; a6 = a6 * vm + vc; a7 = a7 * vm + vc;
        a8 = a8 * vm + vc; a9 = a9 * vm + vc; a10 = a10 * vm + vc; a11 = a11 * vm + vc;
    }
    vf s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    float t = 0;
    for (int k = 0; k < WIDTH / (int)sizeof(float); k++) t += s[k];
    return t;
}
"""
FLAGS = ["-O2", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC"]


@dataclass
class Peak:
    """A measured FMA peak (``gflops``), or None and the ``reason`` it is not."""
    threads: int
    gflops: float | None = None
    wall_gflops: float | None = None   # the same work by the wall clock
    bits: int = 0                  # vector width the loop was compiled for
    ghz: float | None = None       # /proc/cpuinfo's clock, None where it has none
    reason: str = ""

    @property
    def per_cycle(self):
        """flops per cycle per core, or None without a clock."""
        if self.gflops is None or not self.ghz:
            return None
        return self.gflops / (self.threads * self.ghz)

    def describe(self):
        if self.gflops is None:
            return f"FMA peak: not measured ({self.reason})"
        clock = (f", {self.ghz:.2f} GHz: {self.per_cycle:.1f} flops/cycle/core"
                 if self.per_cycle else ", clock unknown")
        shared = (f"; {self.wall_gflops:.0f} by the wall clock, the cores being shared"
                  if self.wall_gflops and self.wall_gflops < 0.9 * self.gflops else "")
        return (f"FMA peak: {self.gflops:.0f} GFLOP/s float32 on {self.threads} "
                f"thread{'s' * (self.threads != 1)} ({self.bits}-bit vectors{clock}{shared})")


def cpu_ghz():
    """The mean 'cpu MHz' of /proc/cpuinfo in GHz, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    except (OSError, ValueError, IndexError):
        return None
    return sum(mhz) / len(mhz) / 1e3 if mhz else None


def compile_loop(folder, cc="cc"):
    """Build the FMA loop into ``folder``: (the loaded library, None) or (None, reason)."""
    if shutil.which(cc) is None:
        return None, f"no C compiler {cc!r}"
    src, lib = os.path.join(folder, "fma.c"), os.path.join(folder, "fma.so")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    try:
        p = subprocess.run([cc, *FLAGS, "-o", lib, src], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{cc} failed: {e}"
    if p.returncode:
        err = (p.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"{cc} {' '.join(FLAGS)} failed: {err}"
    try:
        dll = ctypes.CDLL(lib)       # CDLL, not PyDLL: calls release the GIL
    except OSError as e:
        return None, f"cannot load the compiled loop: {e}"
    dll.fma_loop.argtypes = [ctypes.c_long, ctypes.c_float, ctypes.c_float]
    dll.fma_loop.restype = ctypes.c_float
    dll.fma_lanes.restype = ctypes.c_int
    return dll, None


def run_threads(dll, threads, n):
    """``threads`` threads each run fma_loop(n), all at once: (the seconds by the wall
    clock, each thread's CPU seconds)."""
    start = threading.Barrier(threads + 1)
    results, cpu = [None] * threads, [0.0] * threads

    def work(k):
        start.wait()
        t = time.thread_time()
        results[k] = dll.fma_loop(n, 0.999999, 1e-3)
        cpu[k] = time.thread_time() - t
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - t0
    if not all(r is not None and r == r for r in results):     # ran, and no NaN
        raise RuntimeError(f"the FMA loop returned {results}")
    return seconds, cpu


def fma_peak(threads, cc="cc", seconds=0.04, repeats=5):
    """The float32 FMA peak on ``threads`` threads: a Peak, whose gflops is None (and
    reason says why) where the loop cannot be compiled or loaded. About
    ``seconds * repeats`` of running after a compile of a tenth of a second."""
    with tempfile.TemporaryDirectory(prefix="fma_peak") as folder:
        dll, reason = compile_loop(folder, cc)
        if dll is None:
            return Peak(threads, reason=reason)
        lanes = dll.fma_lanes()
        n = 1 << 16
        try:
            while (t := run_threads(dll, threads, n)[0]) < seconds / 4:    # size the runs
                n *= 4
            n = max(1, int(n * seconds / t))
            runs = [run_threads(dll, threads, n) for _ in range(repeats)]
        except RuntimeError as e:
            return Peak(threads, reason=str(e))
    gflop = 2 * n * ACCUMULATORS * lanes / 1e9             # per thread
    return Peak(threads, max(sum(gflop / max(c, 1e-9) for c in cpu) for _, cpu in runs),
                wall_gflops=gflop * threads / min(wall for wall, _ in runs),
                bits=lanes * 32, ghz=cpu_ghz())


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from engine.parallel import num_threads
    print(fma_peak(int(sys.argv[1]) if len(sys.argv) > 1 else num_threads()).describe())
