"""Max-pooling, overlapping as in the paper (Section 3.4: window 3, stride 2).

    out[n, c, i, j] = max_{0 <= p < size_h, 0 <= q < size_w} x[n, c, i*stride_h + p, j*stride_w + q]

No padding; H_out = (H - size_h) // stride_h + 1 and likewise for W. With
size > stride the windows overlap, so one input pixel can be the maximum of
several windows and its gradient is the sum of theirs. A tie inside a window
sends the gradient to the first maximum in row-major order within the window
(the same rule as ``np.argmax`` on the flattened window).
"""
from __future__ import annotations

import numpy as np

from engine.backend import GpuKernel, few_calls, get_array_module, gpu_kernels
from engine.im2col import col2im_strided, im2col_strided
from engine.parallel import run_parallel
from layers._checks import check_float_array, check_same_backend, pair

_FWD = "maxpool2d_forward"
_BWD = "maxpool2d_backward"


def _geometry(x, size, stride, op):
    kh, kw = pair(size, "size", op)
    sh, sw = pair(stride, "stride", op)
    H, W = x.shape[2], x.shape[3]
    if kh > H or kw > W:
        raise ValueError(f"{op}: the pooling window ({kh}, {kw}) must fit in the input "
                         f"(H, W) = ({H}, {W}); got a window larger than the input "
                         f"(x shape {tuple(x.shape)})")
    Ho = (H - kh) // sh + 1
    Wo = (W - kw) // sw + 1
    return kh, kw, sh, sw, Ho, Wo


def _window_slice(p, q, sh, sw, Ho, Wo):
    """Index of x[:, :, p + i*sh, q + j*sw] for all output positions (i, j)."""
    return (slice(None), slice(None),
            slice(p, p + sh * (Ho - 1) + 1, sh),
            slice(q, q + sw * (Wo - 1) + 1, sw))


# Output widths below this are pooled channels-last on NumPy (see _forward_images).
_CHANNELS_LAST_BELOW = 8


def _offset_dtype(xp, n_offsets):
    # Smallest integer type for the window offset: the argmax map is read once per
    # offset in the backward pass, so its size matters.
    if n_offsets <= 127:
        return xp.int8
    if n_offsets <= 32767:
        return xp.int16
    return xp.int32


def maxpool2d_forward(x, size=3, stride=2):
    """Max-pooling over size_h x size_w windows moved by stride_h, stride_w; no padding.

    Inputs:
    - x: (N, C, H, W) float32 or float64.
    - size: int or (size_h, size_w), the window; must fit in (H, W).
    - stride: int or (stride_h, stride_w).

    Returns (out, cache):
    - out: (N, C, H_out, W_out), same dtype as x, with
      H_out = (H - size_h) // stride_h + 1 and W_out = (W - size_w) // stride_w + 1.
    - cache: (argmax, x_shape, x_dtype, (size_h, size_w), (stride_h, stride_w)), where
      argmax (N, C, H_out, W_out), a small int array, holds the row-major offset
      p * size_w + q of the first maximum in each window.
    """
    check_float_array(x, "x", _FWD, ndim=4)
    kh, kw, sh, sw, Ho, Wo = _geometry(x, size, stride, _FWD)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    out = xp.empty((N, C, Ho, Wo), dtype=x.dtype)
    argmax = xp.empty((N, C, Ho, Wo), dtype=_offset_dtype(xp, kh * kw))
    if gpu_kernels(xp):             # CuPy with ALEXNET_GPU_ROUTES=kernels: one kernel
        H, W = x.shape[2:]
        _FWD_KERNEL(xp, xp.ascontiguousarray(x), H, W, Ho, Wo, kh, kw, sh, sw, out, argmax)
        return out, (argmax, tuple(x.shape), x.dtype, (kh, kw), (sh, sw))
    if few_calls(xp):
        _forward_windows(x, out, argmax, kh, kw, sh, sw, xp)
        return out, (argmax, tuple(x.shape), x.dtype, (kh, kw), (sh, sw))
    # The batch is split over threads (engine/parallel.py): each piece is the whole
    # algorithm below on a few images.
    run_parallel(lambda lo, hi: _forward_images(x[lo:hi], out[lo:hi], argmax[lo:hi],
                                                kh, kw, sh, sw, xp),
                 N, xp, size=x.size)
    cache = (argmax, tuple(x.shape), x.dtype, (kh, kw), (sh, sw))
    return out, cache


def _forward_windows(x, out, argmax, kh, kw, sh, sw, xp):
    """The forward on CuPy, in a few whole-batch calls (the loop below makes about 60,
    each some microseconds of the host's time on a GPU; see engine/im2col.py): every
    window as a column, as the convolution's im2col lays them out, (C, KH*KW, N, OH,
    OW), then its max and argmax over the window axis. argmax gives the first maximum
    in row-major order within the window, the tie rule of this module."""
    N, C = x.shape[:2]
    Ho, Wo = out.shape[2], out.shape[3]
    cols = xp.empty((C, kh, kw, N, Ho, Wo), dtype=x.dtype)
    im2col_strided(x, cols, (sh, sw), (0, 0))
    cols = cols.reshape(C, kh * kw, N, Ho, Wo)
    best = cols.argmax(axis=1)                               # (C, N, Ho, Wo)
    argmax[...] = best.transpose(1, 0, 2, 3)
    out[...] = cols.max(axis=1).transpose(1, 0, 2, 3)


def _forward_images(x, out, argmax, kh, kw, sh, sw, xp):
    """Fill out and argmax (preallocated, the shape of the output) for images x."""
    N, C = x.shape[:2]
    Ho, Wo = out.shape[2], out.shape[3]
    channels_last = xp is np and Wo < _CHANNELS_LAST_BELOW
    # Split x once into its stride phases, x[:, :, r::sh, q::sw], each copied to a
    # dense array. Offset (p, q) of every window then reads phase (p % sh, q % sw) at
    # a plain offset, so the kh*kw passes below read contiguous rows instead of
    # stride-2 ones (about 1.5x faster on CPU for 3x3/2, at the cost of one copy of x).
    #
    # channels_last: small maps (pool5: 6x6 or 3x3 outputs) make every pass below a
    # loop over rows of 3 to 6 values, where NumPy spends its time starting loops.
    # The phases, out and argmax are then channels-last arrays seen through (N, C, H, W)
    # views: the same code runs over C (256) contiguous values instead, 2x faster for
    # pool5 even with the transposing copies.
    phases = {}

    def window(p, q):
        key = (p % sh, q % sw)
        if key not in phases:
            phase = x[:, :, key[0]::sh, key[1]::sw]
            if channels_last:
                phase = xp.ascontiguousarray(phase.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            else:
                phase = xp.ascontiguousarray(phase)
            phases[key] = phase
        return phases[key][:, :, p // sh:p // sh + Ho, q // sw:q // sw + Wo]

    final_out, final_argmax = out, argmax
    if channels_last:
        out = xp.empty((N, Ho, Wo, C), dtype=out.dtype).transpose(0, 3, 1, 2)
        argmax = xp.empty((N, Ho, Wo, C), dtype=argmax.dtype).transpose(0, 3, 1, 2)
    better = xp.empty_like(out, dtype=bool)          # in out's memory order

    def scan(nan_aware):
        out[...] = window(0, 0)
        argmax[...] = 0
        for idx in range(1, kh * kw):
            scan_offset(idx, nan_aware)

    def scan_offset(idx, nan_aware):
        win = window(idx // kw, idx % kw)
        # Strict '>' while scanning offsets in increasing order: an equal value later
        # in the window never takes over, so ties keep the first maximum.
        xp.greater(win, out, out=better)
        if nan_aware:       # the first NaN wins, as in np.argmax and the GPU kernel
            xp.logical_or(better, xp.isnan(win) & ~xp.isnan(out), out=better)
        xp.maximum(out, win, out=out)
        # The argmax is the last offset that strictly improved the running max, i.e.
        # the largest idx with better == True. better * idx, max-ed in, records it
        # without np.where or boolean indexing (both far slower on random masks).
        if argmax.dtype == xp.int8:
            step = better.view(xp.int8)
            step *= idx
        else:
            step = better.astype(argmax.dtype)
            step *= idx
        xp.maximum(argmax, step, out=argmax)

    scan(nan_aware=False)
    # '>' is never true against a NaN, so after one the pass above keeps the offset
    # before it. A NaN only comes from a diverged net: scan again, NaN-aware, only then.
    if xp.isnan(out).any():
        scan(nan_aware=True)
    if channels_last:
        final_out[...] = out                 # back to (N, C, H, W) memory order
        final_argmax[...] = argmax


def maxpool2d_backward(dout, cache, method="auto", workspace=None):
    """Gradient of maxpool2d_forward with respect to x.

    dx[n, c, i*sh + p, j*sw + q] += dout[n, c, i, j] for the (p, q) holding the
    window's first maximum; every other input of that window gets nothing. With
    overlapping windows one input pixel can collect from several outputs; the
    contributions add.

    Inputs:
    - dout: (N, C, H_out, W_out), same dtype as the forward input.
    - cache: from maxpool2d_forward.
    - method: how the gradients are routed, same result either way (up to the order
      of float additions where windows overlap):
      "masks": one pass per window offset (p, q): dx[offset's view] += dout where
               argmax == p*size_w + q. Plain array code, for every backend.
      "scatter": one ``np.add.at`` of dout at the flat index of each maximum. NumPy
               (>= 1.25) runs it as one tight loop: 3x faster than the masks on CPU.
      "windows": dout times each offset's mask, laid out as the columns of an
               im2col (C, KH, KW, N, OH, OW), and summed back onto the input by
               col2im_strided: a few whole-batch calls, where the masks make about
               50 (each a few microseconds of the host's time on a GPU).
      "kernel": a GPU kernel (CuPy only): each input pixel sums dout over the
               windows that hold it and chose it as their maximum (a gather).
      "auto": scatter on NumPy; on CuPy, the kernel with ALEXNET_GPU_ROUTES=kernels,
               else the masks. (The windows' few calls spare the host, but on an
               H200 pool1's backward took 1.39 ms of GPU time that way against 0.64
               ms for the masks; docs/PERFORMANCE.md.)
    - workspace: None, or a dict owned by the caller (the MaxPool2d layer) where the
      scatter keeps its index arrays from one call to the next (see _scatter_index).

    Returns dx: (N, C, H, W).
    """
    argmax, x_shape, x_dtype, (kh, kw), (sh, sw) = cache
    check_float_array(dout, "dout", _BWD, ndim=4)
    if dout.shape != argmax.shape:
        raise ValueError(f"{_BWD}: dout must have the shape of the forward output "
                         f"{tuple(argmax.shape)}, got {tuple(dout.shape)}")
    if dout.dtype != x_dtype:
        raise TypeError(f"{_BWD}: dout must have the forward input's dtype {x_dtype}, "
                        f"got {dout.dtype}; cast it first")
    check_same_backend(_BWD, dout=dout, argmax=argmax)
    if method not in ("auto", "masks", "scatter", "windows", "kernel"):
        raise ValueError(f"{_BWD}: method must be 'auto', 'masks', 'scatter', 'windows' "
                         f"or 'kernel', got {method!r}")
    xp = get_array_module(dout)
    if method == "auto":
        method = "scatter" if xp is np else ("kernel" if gpu_kernels(xp) else "masks")
    if method == "kernel" and xp is np:
        raise ValueError(f"{_BWD}: method 'kernel' is a GPU kernel, for CuPy arrays only")
    dx = xp.empty(x_shape, dtype=x_dtype)
    if method == "kernel":
        H, W = x_shape[2:]
        Ho, Wo = dout.shape[2:]
        _BWD_KERNEL(xp, xp.ascontiguousarray(dout), argmax, H, W, Ho, Wo, kh, kw, sh, sw, dx)
        return dx
    if method == "windows":
        N, C, Ho, Wo = dout.shape
        offsets = xp.arange(kh * kw, dtype=argmax.dtype).reshape(1, kh * kw, 1, 1, 1)
        hit = argmax.transpose(1, 0, 2, 3)[:, None] == offsets     # (C, KH*KW, N, Ho, Wo)
        cols = dout.transpose(1, 0, 2, 3)[:, None] * hit
        col2im_strided(cols.reshape(C, kh, kw, N, Ho, Wo), dx, (sh, sw), (0, 0))
        return dx
    if method == "masks":
        run_parallel(lambda lo, hi: _backward_images(dout[lo:hi], argmax[lo:hi], dx[lo:hi],
                                                     kh, kw, sh, sw, xp),
                     x_shape[0], xp, size=dx.size)
        return dx
    offset, base, flat = _scatter_index({} if workspace is None else workspace,
                                        x_shape, dout.shape, (kh, kw), (sh, sw), xp)
    # Pieces of a few images (about 1 MB of dx each): the index is written, added to
    # and read by the scatter while it is still in the CPU's cache. Every piece's index
    # counts from its own first image, so base[:hi - lo] serves any piece.
    run_parallel(lambda lo, hi: _backward_scatter(dout[lo:hi], argmax[lo:hi], dx[lo:hi],
                                                  offset, base[:hi - lo], flat[lo:hi], xp),
                 x_shape[0], xp, size=dx.size, piece_size=_PIECE)
    return dx


# Elements of dx per piece of the scatter backward (1 MB of float32).
_PIECE = 1 << 18


def _scatter_index(workspace, x_shape, out_shape, size, stride, xp):
    """The arrays the scatter builds its flat index from, kept in ``workspace``.

    - offset (kh*kw,): flat offset (p*W + q) in dx of each window offset (p, q);
    - base (N, C, H_out, W_out): flat index in dx of each window's corner (plane
      (n, c), row i*sh, column j*sw);
    - flat: a buffer of base's shape and type for the index of this call.

    They depend only on the shapes, so a layer computes them once: about a third of
    the backward's time went to building base and to the page faults of a fresh
    int64 array of the size of the output (11 MB for the mini preset's pool1).
    """
    key = (tuple(x_shape), tuple(out_shape), size, stride)
    if workspace.get("key") != key:
        workspace.clear()                         # free the old arrays before the new
        N, C, H, W = x_shape
        Ho, Wo = out_shape[2], out_shape[3]
        (kh, kw), (sh, sw) = size, stride
        offset = xp.asarray([(k // kw) * W + k % kw for k in range(kh * kw)], dtype=xp.intp)
        corner = (xp.arange(Ho, dtype=xp.intp) * (sh * W))[:, None] + xp.arange(Wo) * sw
        base = (xp.arange(N * C, dtype=xp.intp) * (H * W)).reshape(N, C, 1, 1) + corner
        workspace.update(key=key, offset=offset, base=base, flat=xp.empty_like(base))
    return workspace["offset"], workspace["base"], workspace["flat"]


def _backward_scatter(dout, argmax, dx, offset, base, flat, xp):
    """The same as _backward_images, as one scatter-add (NumPy): dx, dout, argmax,
    base and flat hold the same images; flat is overwritten."""
    # Flat index into dx of each window's maximum: the window's corner (base) plus the
    # offset of the argmax within the window, looked up from the kh*kw-entry table.
    xp.take(offset, argmax, out=flat)
    flat += base
    dx[...] = 0
    xp.add.at(dx.reshape(-1), flat.reshape(-1), dout.reshape(-1))


def _backward_images(dout, argmax, dx, kh, kw, sh, sw, xp):
    """Overwrite dx (preallocated, the input's shape) with the gradient for these images."""
    Ho, Wo = dout.shape[2], dout.shape[3]
    dx[...] = 0
    hit = xp.empty(dout.shape, dtype=bool)
    contrib = xp.empty_like(dout)
    for idx in range(kh * kw):
        xp.equal(argmax, idx, out=hit)
        # Multiplying by the 0/1 mask beats np.where / boolean assignment on random masks.
        xp.multiply(dout, hit, out=contrib)
        # '+=' on a strided view, one offset at a time: overlapping windows reach the
        # same pixel through different offsets, never twice within one offset, so no
        # np.add.at is needed.
        dx[_window_slice(idx // kw, idx % kw, sh, sw, Ho, Wo)] += contrib


# The forward and backward as GPU kernels (engine/backend.py: GpuKernel), for CuPy
# with ALEXNET_GPU_ROUTES=kernels: one kernel each way, where the few-call route
# copies every window (an im2col, 9 copies of the input for 3x3 windows) and reduces
# it twice, and the masks take 3 passes per window offset. Both gather: the forward
# has a thread per output, the backward a thread per input pixel, which visits the
# (at most ceil(size/stride)^2) windows that hold it, so no two threads write one
# place and no atomics are needed.
_FWD_KERNEL = GpuKernel(
    "alexnet_maxpool_forward",
    "raw T x, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, int32 kw, int32 sh, int32 sw",
    "T out, S argmax",
    """
    const int ow = (int)(i % Wo);
    const int oh = (int)((i / Wo) % Ho);
    const ptrdiff_t corner = (i / ((ptrdiff_t)Ho * Wo)) * H * W
                             + (ptrdiff_t)(oh * sh) * W + ow * sw;
    T best = x[corner];
    int arg = 0;
    for (int p = 0; p < kh; p++) {
        for (int q = 0; q < kw; q++) {
            const T v = x[corner + (ptrdiff_t)p * W + q];
            // strict '>' in row-major order keeps the first maximum (the module's tie
            // rule); a NaN wins as in np.max and np.argmax, the first one found
            if (v > best || (v != v && best == best)) {
                best = v;
                arg = p * kw + q;
            }
        }
    }
    out = best;
    argmax = (S)arg;
    """)

# Input row h lies in the windows oh = ceil((h - kh + 1) / sh) .. floor(h / sh) (within
# 0 .. Ho-1), and likewise for columns; the pixel collects dout of each such window
# whose argmax is its own offset (h - oh*sh, w - ow*sw) in it.
_BWD_KERNEL = GpuKernel(
    "alexnet_maxpool_backward",
    "raw T dout, raw S argmax, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, int32 kw, "
    "int32 sh, int32 sw",
    "T dx",
    """
    const int w = (int)(i % W);
    const int h = (int)((i / W) % H);
    const ptrdiff_t plane = (i / ((ptrdiff_t)H * W)) * Ho * Wo;
    const int oh_lo = h >= kh ? (h - kh) / sh + 1 : 0;
    const int oh_hi = h / sh < Ho - 1 ? h / sh : Ho - 1;
    const int ow_lo = w >= kw ? (w - kw) / sw + 1 : 0;
    const int ow_hi = w / sw < Wo - 1 ? w / sw : Wo - 1;
    T g = 0;
    for (int oh = oh_lo; oh <= oh_hi; oh++) {
        for (int ow = ow_lo; ow <= ow_hi; ow++) {
            const ptrdiff_t o = plane + (ptrdiff_t)oh * Wo + ow;
            if ((int)argmax[o] == (h - oh * sh) * kw + (w - ow * sw)) {
                g += dout[o];
            }
        }
    }
    dx = g;
    """)


def maxpool2d_forward_naive(x, size=3, stride=2):
    """Reference max-pooling: a Python loop over every window. Returns only out.

    Slow and plain on purpose, for tests and notebooks; same arguments, output
    shape and dtype as maxpool2d_forward.
    """
    check_float_array(x, "x", "maxpool2d_forward_naive", ndim=4)
    kh, kw, sh, sw, Ho, Wo = _geometry(x, size, stride, "maxpool2d_forward_naive")
    xp = get_array_module(x)
    N, C = x.shape[:2]
    out = xp.empty((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    out[n, c, i, j] = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw].max()
    return out


def maxpool2d_backward_naive(dout, x, size=3, stride=2):
    """Reference gradient: for every window, add dout to its first maximum (np.argmax
    on the flattened window, row-major). Takes x itself rather than a cache.
    """
    check_float_array(x, "x", "maxpool2d_backward_naive", ndim=4)
    kh, kw, sh, sw, Ho, Wo = _geometry(x, size, stride, "maxpool2d_backward_naive")
    xp = get_array_module(x)
    N, C = x.shape[:2]
    dx = xp.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    p, q = divmod(int(window.argmax()), kw)
                    dx[n, c, i * sh + p, j * sw + q] += dout[n, c, i, j]
    return dx
