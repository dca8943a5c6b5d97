"""NumPy / CuPy backend: one codebase, two array libraries.

Every op in ``layers/`` starts with ``xp = get_array_module(x)``: the array module
comes from the inputs, never from a global setting, so the same function runs on
NumPy arrays (CPU) and on CuPy arrays (GPU). Host/device copies happen only at the
edges: in the data pipeline, the metrics, and checkpoints.

    >>> from engine.backend import get_array_module, to_device, to_numpy
    >>> x = np.ones((2, 3), dtype=np.float32)
    >>> get_array_module(x) is np
    True
    >>> xg = to_device(x, "cuda")      # needs CuPy and a GPU
    >>> to_numpy(xg)                   # back to the host
"""
from __future__ import annotations

import os

import numpy as np

_INSTALL_HINT = (
    "install the GPU extra that matches your CUDA version: "
    "pip install -e '.[cuda12]' (CUDA 12) or pip install -e '.[cuda13]' (CUDA 13)"
)

try:  # CuPy is optional: everything works on NumPy without it.
    import cupy as _cupy  # type: ignore
except Exception as _e:  # ImportError, or a broken CUDA install raising at import
    _cupy = None
    _CUPY_IMPORT_ERROR = repr(_e)
else:
    _CUPY_IMPORT_ERROR = None


class GPUUnavailableError(RuntimeError):
    """Raised when the GPU is asked for but CuPy or a usable GPU is missing."""


def cupy_module():
    """Return the imported ``cupy`` module, or ``None`` when CuPy is not installed."""
    return _cupy


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    This is the one question every op asks of its inputs. Non-array arguments
    (None, Python numbers) are ignored.
    """
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def is_gpu_array(x) -> bool:
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def gpu_status() -> tuple[bool, str]:
    """Answer "is a GPU usable here?" honestly, with the reason.

    Returns ``(usable, reason)``. Usable means CuPy imports, sees at least one CUDA
    device, and can actually run a kernel on it (a driver mismatch only shows then).
    """
    if _cupy is None:
        return False, f"CuPy is not installed ({_CUPY_IMPORT_ERROR}); {_INSTALL_HINT}"
    try:
        n = _cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device
        return False, f"CuPy is installed but no CUDA device is usable: {e}"
    if n == 0:
        return False, "CuPy is installed but found no CUDA device"
    try:
        a = _cupy.arange(4, dtype=_cupy.float32)
        float((a * 2).sum())
    except Exception as e:
        return False, f"CuPy found {n} CUDA device(s) but could not run a kernel: {e}"
    name = _cupy.cuda.runtime.getDeviceProperties(0)["name"]
    if isinstance(name, bytes):
        name = name.decode()
    return True, f"GPU 0: {name} ({n} device(s))"


def gpu_available() -> bool:
    """True when CuPy is installed and a CUDA device can run kernels."""
    return gpu_status()[0]


# The route the ops take on CuPy: "few" (default), a few whole-array calls per op
# where the CPU runs loops of slices (im2col, col2im, the pooling's forward, ReLU's
# backward, the SGD update; see engine/im2col.py), or "loops", the CPU's code on CuPy
# arrays too, or "kernels", the few-call route with hand-written GPU kernels where an
# op has one (GpuKernel below: LRN, the pooling, im2col, col2im and dropout's mask,
# one kernel each way instead of several whole-array passes). Choose one with
# ALEXNET_GPU_ROUTES in the environment or set_gpu_routes(): to time the routes
# against each other on a GPU (python -m bench.gpu does), and as a way back to the
# CPU's code if a route fails on some GPU.
GPU_ROUTES = ("few", "loops", "kernels")
_gpu_routes = [os.environ.get("ALEXNET_GPU_ROUTES", "few") or "few"]


def set_gpu_routes(name: str) -> None:
    """Choose the ops' route on CuPy: 'few', 'loops' or 'kernels' (see GPU_ROUTES)."""
    if name not in GPU_ROUTES:
        raise ValueError(f"GPU routes must be one of {', '.join(GPU_ROUTES)}, got {name!r} "
                         f"(from set_gpu_routes or ALEXNET_GPU_ROUTES)")
    _gpu_routes[0] = name


def gpu_routes() -> str:
    """The route the ops take on CuPy now: 'few', 'loops' or 'kernels'."""
    set_gpu_routes(_gpu_routes[0])          # an unknown value from the environment: say so
    return _gpu_routes[0]


def few_calls(xp) -> bool:
    """Whether an op on arrays of module xp takes its few-call route: CuPy, unless the
    routes are 'loops' ('kernels' is the few-call route too, with kernels in places)."""
    return xp is not np and gpu_routes() != "loops"


def gpu_kernels(xp) -> bool:
    """Whether an op on arrays of module xp runs its hand-written GPU kernel, where it
    has one: CuPy with the routes 'kernels'."""
    return xp is not np and gpu_routes() == "kernels"


KERNELS = []        # every GpuKernel of the project, in the order they were defined


class GpuKernel:
    """A hand-written GPU kernel, kept beside the NumPy code it replaces on CuPy.

    It is CuPy's ``ElementwiseKernel``: ``body`` is CUDA C++ run once per element of
    the outputs, with ``i`` the element's flat (C-order) index; a ``raw`` parameter is
    the whole array, read at any flat index (``x[j]``); other array parameters are
    the element i; scalars are values. ``T`` stands for the arrays' float type, so
    one kernel serves float32 training and float64 gradient checks. Each kernel
    gathers: a thread writes only its own outputs and reads what it needs, so there
    are no atomics and the result is the same from run to run.

    The kernel is compiled by CuPy (NVRTC) on first use and cached by CuPy. Where no
    GPU is at hand, the tests run these same sources through the NumPy stand-in for
    CuPy (tests/fake_cupy), which compiles them as C++ for the CPU, and
    scripts/check_kernels.py compiles them with nvcc as CuPy would (see
    docs/PERFORMANCE.md, "Kernels").

    Call it as ``kernel(xp, *inputs, *outputs)``: outputs are passed, preallocated,
    and their size is the number of threads; one that is not C-contiguous (a view) is
    computed into a contiguous array and copied into it.
    """

    def __init__(self, name: str, in_params: str, out_params: str, body: str,
                 preamble: str = ""):
        self.name, self.in_params, self.out_params = name, in_params, out_params
        self.body, self.preamble = body, preamble
        self._built = {}
        KERNELS.append(self)

    def __call__(self, xp, *args):
        k = self._built.get(xp)
        if k is None:
            k = self._built[xp] = xp.ElementwiseKernel(self.in_params, self.out_params,
                                                       self.body, self.name,
                                                       preamble=self.preamble)
        nout = len(self.out_params.split(","))
        outs = args[len(args) - nout:]
        dense = [o if o.flags.c_contiguous else xp.empty(o.shape, dtype=o.dtype)
                 for o in outs]
        k(*args[:len(args) - nout], *dense)
        for o, d in zip(outs, dense):
            if d is not o:
                o[...] = d
        return outs[0] if nout == 1 else tuple(outs)

    def __repr__(self):
        return f"GpuKernel({self.name!r})"


_GPU_CONFIRMED = []      # [True] once gpu_status() has run a kernel in this process


def require_gpu():
    """Return the ``cupy`` module, or raise one clear error saying what is missing.

    The first call asks gpu_status(), which runs a kernel and waits for it; once that
    worked, later calls trust it. to_device calls this for every batch, and a probe
    each time would make each batch wait for the GPU to finish all the work queued
    before it."""
    if not _GPU_CONFIRMED:
        ok, reason = gpu_status()
        if not ok:
            raise GPUUnavailableError(f"the GPU was requested but is not usable: {reason}")
        _GPU_CONFIRMED.append(True)
    return _cupy


def check_device(device: str) -> str:
    """Validate a device name ('cpu' or 'cuda'); raise ValueError naming the flag value."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        require_gpu()
    return device


def to_device(x, device: str):
    """Copy an array to ``device`` ('cpu' gives NumPy, 'cuda' gives CuPy).

    Returns the input unchanged when it already lives there.
    """
    if device == "cpu":
        return to_numpy(x)
    if device == "cuda":
        cp = require_gpu()
        return cp.asarray(x)
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def to_numpy(x):
    """Return a NumPy array for ``x`` (copying from the GPU if needed)."""
    if is_gpu_array(x):
        return _cupy.asnumpy(x)
    return np.asarray(x)


def device_of(x) -> str:
    return "cuda" if is_gpu_array(x) else "cpu"


def synchronize(xp=None):
    """Wait for queued GPU work (for timing); a no-op on NumPy, and where CuPy is
    installed without a usable GPU. A CUDA error of the queued work is raised here."""
    if _cupy is not None and (xp is None or xp is _cupy):
        if xp is None:
            try:
                if _cupy.cuda.runtime.getDeviceCount() == 0:
                    return
            except Exception:     # no driver or no device: nothing can be queued
                return
        _cupy.cuda.Stream.null.synchronize()
