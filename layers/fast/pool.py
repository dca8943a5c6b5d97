"""The fast routes of max-pooling (layers/pool.py reads it top-down).

- forward: the CPU's scan over the window offsets, on dense stride phases, on
  channels-last copies for small maps, the batch split over the threads; and one
  GPU kernel (ALEXNET_GPU_ROUTES=kernels). CuPy's few-call route is the readable
  forward itself (an im2col of the windows, then max and argmax).
- backward: the CPU's scatter (one ``np.add.at``, the index kept from call to call);
  the few-call ``windows`` route (masks laid out as im2col columns, summed by
  col2im); and one GPU kernel. The readable backward is the ``masks`` route, the one
  CuPy takes by default.

Every route gives the readable route's numbers: the forward picks values (no
arithmetic), and the backward adds each pixel's contributions, the only place where
the order of float additions can differ between routes (overlapping windows).
"""
from __future__ import annotations

import numpy as np

from engine.backend import GpuKernel, few_calls, get_array_module, gpu_kernels
from engine.fast_im2col import col2im_strided
from engine.parallel import run_parallel


def forward_applies(xp) -> bool:
    """Whether maxpool2d_forward hands over to this module: on NumPy (and CuPy's
    'loops' route, the CPU's code on CuPy arrays), and on the 'kernels' route."""
    return not few_calls(xp) or gpu_kernels(xp)


def auto_method(xp) -> str:
    """maxpool2d_backward's method="auto": the scatter on NumPy; on CuPy, the kernel
    with ALEXNET_GPU_ROUTES=kernels, else the readable masks. (The windows' few calls
    spare the host but cost the GPU more time than the masks: docs/PERFORMANCE.md.)"""
    if xp is np:
        return "scatter"
    return "kernel" if gpu_kernels(xp) else "masks"


def maxpool2d_forward(x, out, argmax, size, stride):
    """Fill out and argmax (preallocated, (N, C, H_out, W_out)) as maxpool2d_forward
    does: the GPU kernel on the 'kernels' route, else the scan, the batch split over
    the threads (engine/parallel.py), each piece the whole algorithm on a few images."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw) = size, stride
    if gpu_kernels(xp):
        H, W = x.shape[2:]
        Ho, Wo = out.shape[2:]
        _FWD_KERNEL(xp, xp.ascontiguousarray(x), H, W, Ho, Wo, kh, kw, sh, sw, out, argmax)
        return
    run_parallel(lambda lo, hi: _forward_images(x[lo:hi], out[lo:hi], argmax[lo:hi],
                                                kh, kw, sh, sw, xp),
                 x.shape[0], xp, size=x.size)


# Output widths below this are pooled channels-last on NumPy (see _forward_images).
_CHANNELS_LAST_BELOW = 8


def _forward_images(x, out, argmax, kh, kw, sh, sw, xp):
    """Fill out and argmax (preallocated, the shape of the output) for images x."""
    N, C = x.shape[:2]
    Ho, Wo = out.shape[2], out.shape[3]
    channels_last = xp is np and Wo < _CHANNELS_LAST_BELOW
    # Split x once into its stride phases, x[:, :, r::sh, q::sw], each copied to a
    # dense array. Offset (p, q) of every window then reads phase (p % sh, q % sw) at
    # a plain offset, so the kh*kw passes below read contiguous rows instead of
    # stride-2 ones, at the cost of one copy of x.
    #
    # channels_last: small maps (pool5: 6x6 or 3x3 outputs) make every pass below a
    # loop over rows of 3 to 6 values, where NumPy spends its time starting loops.
    # The phases, out and argmax are then channels-last arrays seen through (N, C, H, W)
    # views: the same code runs over C (256) contiguous values instead, which more
    # than pays for the transposing copies.
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


def maxpool2d_backward(dout, cache, method, workspace=None):
    """maxpool2d_backward by ``method``: "scatter", "windows" or "kernel" (the
    readable route is "masks"). ``workspace``: the scatter's kept index arrays."""
    argmax, x_shape, x_dtype, (kh, kw), (sh, sw) = cache
    xp = get_array_module(dout)
    dx = xp.empty(x_shape, dtype=x_dtype)
    if method == "kernel":
        H, W = x_shape[2:]
        Ho, Wo = dout.shape[2:]
        _BWD_KERNEL(xp, xp.ascontiguousarray(dout), argmax, H, W, Ho, Wo, kh, kw, sh, sw, dx)
        return dx
    if method == "windows":
        # dout times each offset's mask, laid out as the columns of an im2col
        # (C, KH, KW, N, OH, OW), summed back onto the input by col2im: a few
        # whole-batch calls, where the masks make three per window offset.
        N, C, Ho, Wo = dout.shape
        offsets = xp.arange(kh * kw, dtype=argmax.dtype).reshape(1, kh * kw, 1, 1, 1)
        hit = argmax.transpose(1, 0, 2, 3)[:, None] == offsets     # (C, KH*KW, N, Ho, Wo)
        cols = dout.transpose(1, 0, 2, 3)[:, None] * hit
        col2im_strided(cols.reshape(C, kh, kw, N, Ho, Wo), dx, (sh, sw), (0, 0))
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

    They depend only on the shapes, so a layer computes them once, and its later
    calls neither build base again nor fault in the pages of a fresh int64 array the
    size of the output.
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
    """The masks' gradient as one scatter-add (NumPy): dx, dout, argmax, base and flat
    hold the same images; flat is overwritten. NumPy (>= 1.25) runs ``np.add.at`` as
    one tight loop."""
    # Flat index into dx of each window's maximum: the window's corner (base) plus the
    # offset of the argmax within the window, looked up from the kh*kw-entry table.
    xp.take(offset, argmax, out=flat)
    flat += base
    dx[...] = 0
    xp.add.at(dx.reshape(-1), flat.reshape(-1), dout.reshape(-1))


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
