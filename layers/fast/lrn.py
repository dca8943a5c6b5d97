"""The fast routes of local response normalization (layers/lrn.py reads it top-down).

- NumPy: the readable route's steps, in place, on pieces of a few images spread over
  the threads (engine/parallel.py). The window runs over channels, so every piece
  holds whole images, and the result is the same to the last bit however the batch
  is cut.
- CuPy with ALEXNET_GPU_ROUTES=kernels: one GPU kernel each way.

CuPy's other routes take the readable code, one whole-batch pass per step.
"""
from __future__ import annotations

import numpy as np

from engine.backend import GpuKernel, get_array_module, gpu_kernels
from engine.parallel import run_parallel


def applies(xp) -> bool:
    """Whether lrn_forward / lrn_backward hand over to this module: on NumPy, and on
    CuPy's 'kernels' route."""
    return xp is np or gpu_kernels(xp)


# Elements per piece of the batch (about 1 MB of float32): each piece goes through
# ten passes, and from the second on they find it in the CPU's cache.
_PIECE = 1 << 18


def lrn_forward(x, size, alpha, beta, k):
    """lrn_forward for checked arguments: (out, cache) as layers/lrn.py returns them."""
    xp = get_array_module(x)
    if gpu_kernels(xp):
        x = xp.ascontiguousarray(x)
    scale, denom, out = xp.empty_like(x), xp.empty_like(x), xp.empty_like(x)
    if gpu_kernels(xp):
        C, H, W = x.shape[1:]
        _FWD_KERNEL(xp, x, C, H * W, size // 2, alpha, beta, k, scale, denom, out)
        return out, (x, scale, denom, size, alpha, beta)

    def images(lo, hi):
        x_part, scale_part, denom_part = x[lo:hi], scale[lo:hi], denom[lo:hi]
        sq = x_part * x_part
        sq *= alpha
        xp.add(sq, k, out=scale_part)       # the centre channel and k in one pass
        _add_channel_neighbours(scale_part, sq, size // 2)
        if beta == 0.75:                    # sqrt(s) * sqrt(sqrt(s)), as layers/lrn.py does
            xp.sqrt(scale_part, out=denom_part)
            denom_part *= xp.sqrt(denom_part, out=sq)     # sq is no longer needed
        else:
            xp.power(scale_part, beta, out=denom_part)
        xp.divide(x_part, denom_part, out=out[lo:hi])
    run_parallel(images, x.shape[0], xp, size=x.size, piece_size=_PIECE)
    return out, (x, scale, denom, size, alpha, beta)


def _add_channel_neighbours(w, a, r):
    """In place: w[:, c] += a[:, j] for every other channel j of c's window, the
    same adds in the same order as layers/lrn.py's _add_channel_neighbours."""
    C = a.shape[1]
    for d in range(1, min(r, C - 1) + 1):
        w[:, d:] += a[:, :-d]
        w[:, :-d] += a[:, d:]
    return w


def lrn_backward(dout, cache):
    """lrn_backward for a checked dout."""
    x, scale, denom, size, alpha, beta = cache
    xp = get_array_module(dout)
    if gpu_kernels(xp):
        dx = xp.empty(dout.shape, dtype=dout.dtype)
        C, H, W = x.shape[1:]
        _BWD_KERNEL(xp, x, xp.ascontiguousarray(dout), scale, denom, C, H * W, size // 2,
                    2.0 * alpha * beta, dx)
        return dx
    dx = xp.empty_like(dout)

    def images(lo, hi):
        x_part, dx_part = x[lo:hi], dx[lo:hi]
        xp.divide(dout[lo:hi], denom[lo:hi], out=dx_part)   # dout * scale^-beta: direct
        t = dx_part * x_part                                # dout * b
        t /= scale[lo:hi]                                   # dout * b / scale
        s = _add_channel_neighbours(t.copy(), t, size // 2)
        s *= x_part
        s *= 2.0 * alpha * beta
        dx_part -= s
    run_parallel(images, x.shape[0], xp, size=x.size, piece_size=_PIECE)
    return dx


# The same two passes as GPU kernels (engine/backend.py: GpuKernel), for CuPy with
# ALEXNET_GPU_ROUTES=kernels. The array code makes about ten whole-array passes each
# way (squares, the neighbours' adds, the power, the divisions), each a kernel that
# reads and writes the whole activation; these make one, where a thread computes one
# element and reads its window's n values, which neighbouring threads read too, so
# they come from the GPU's caches. Element i of x (N, C, H, W) is channel
# c = (i / HW) % C, and its channel-0 neighbour at the same pixel is i - c*HW.
_WINDOW = """
    const int c = (int)((i / HW) % C);
    const ptrdiff_t c0 = i - (ptrdiff_t)c * HW;
    const int lo = c > half ? c - half : 0;
    const int hi = c + half < C - 1 ? c + half : C - 1;
"""

_FWD_KERNEL = GpuKernel(
    "alexnet_lrn_forward",
    "raw T x, int32 C, int32 HW, int32 half, float64 alpha, float64 beta, float64 k",
    "T scale, T denom, T out",
    _WINDOW + """
    T s = 0;
    for (int j = lo; j <= hi; j++) {
        const T v = x[c0 + (ptrdiff_t)j * HW];
        s += v * v;
    }
    scale = (T)k + (T)alpha * s;
    denom = pow(scale, (T)beta);
    out = x[i] / denom;
    """)

# dx[m] = dout[m] / denom[m] - 2 alpha beta x[m] * sum over the window of
# dout * x / (denom * scale), as in lrn_backward's docstring.
_BWD_KERNEL = GpuKernel(
    "alexnet_lrn_backward",
    "raw T x, raw T dout, raw T scale, raw T denom, int32 C, int32 HW, int32 half, "
    "float64 ab2",
    "T dx",
    _WINDOW + """
    T s = 0;
    for (int j = lo; j <= hi; j++) {
        const ptrdiff_t q = c0 + (ptrdiff_t)j * HW;
        s += dout[q] / denom[q] * x[q] / scale[q];
    }
    dx = dout[i] / denom[i] - (T)ab2 * x[i] * s;
    """)
