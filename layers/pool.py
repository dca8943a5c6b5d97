"""Max-pooling, overlapping as in the paper (Section 3.4: window 3, stride 2).

    out[n, c, i, j] = max_{0 <= p < size_h, 0 <= q < size_w} x[n, c, i*stride_h + p, j*stride_w + q]

No padding; H_out = (H - size_h) // stride_h + 1 and likewise for W. With
size > stride the windows overlap, so one input pixel can be the maximum of
several windows and its gradient is the sum of theirs. A tie inside a window
sends the gradient to the first maximum in row-major order within the window
(the same rule as ``np.argmax`` on the flattened window).

The forward and backward below are the plain array code; the CPU's threaded scan
and scatter and the GPU kernels are in layers/fast/pool.py.
"""
from __future__ import annotations

import numpy as np

from engine.backend import get_array_module
from engine.im2col import im2col_into
from layers._checks import check_float_array, check_same_backend, pair
from layers.fast import pool as fast

_FWD = "maxpool2d_forward"
_BWD = "maxpool2d_backward"


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
    cache = (argmax, tuple(x.shape), x.dtype, (kh, kw), (sh, sw))
    if fast.forward_applies(xp):     # NumPy: a threaded scan; ALEXNET_GPU_ROUTES=kernels
        fast.maxpool2d_forward(x, out, argmax, (kh, kw), (sh, sw))
        return out, cache
    # Every window as a column, as the convolution's im2col lays them out:
    # windows[c, p*size_w + q, n, i, j] = x[n, c, i*stride_h + p, j*stride_w + q]
    windows = xp.empty((C, kh, kw, N, Ho, Wo), dtype=x.dtype)
    im2col_into(x, windows, (sh, sw), (0, 0))
    windows = windows.reshape(C, kh * kw, N, Ho, Wo)
    # argmax gives the first maximum in row-major order within the window: the tie rule
    argmax[...] = windows.argmax(axis=1).transpose(1, 0, 2, 3)
    out[...] = windows.max(axis=1).transpose(1, 0, 2, 3)
    return out, cache


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
               argmax == p*size_w + q. The code below, for every backend.
      "scatter": one ``np.add.at`` of dout at the flat index of each maximum (NumPy).
      "windows": the masks laid out as the columns of an im2col and summed back by
               col2im: a few whole-batch calls.
      "kernel": a GPU kernel (CuPy only): each input pixel sums dout over the
               windows that hold it and chose it as their maximum (a gather).
      "auto": scatter on NumPy; on CuPy, the kernel with ALEXNET_GPU_ROUTES=kernels,
               else the masks.
      (layers/fast/pool.py has all but the masks.)
    - workspace: None, or a dict owned by the caller (the MaxPool2d layer) where the
      scatter keeps its index arrays from one call to the next.

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
        method = fast.auto_method(xp)
    if method == "kernel" and xp is np:
        raise ValueError(f"{_BWD}: method 'kernel' is a GPU kernel, for CuPy arrays only")
    if method != "masks":
        return fast.maxpool2d_backward(dout, cache, method, workspace)
    Ho, Wo = dout.shape[2], dout.shape[3]
    dx = xp.zeros(x_shape, dtype=x_dtype)
    for idx in range(kh * kw):
        # dout where offset idx held the window's maximum, else 0 (multiplying by the
        # 0/1 mask beats np.where and boolean assignment on random masks)
        contrib = dout * (argmax == idx)
        # '+=' on a strided view, one offset at a time: overlapping windows reach the
        # same pixel through different offsets, never twice within one offset, so no
        # np.add.at is needed.
        dx[_window_slice(idx // kw, idx % kw, sh, sw, Ho, Wo)] += contrib
    return dx


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


def _offset_dtype(xp, n_offsets):
    # Smallest integer type for the window offset: the argmax map is read once per
    # offset in the backward pass, so its size matters.
    if n_offsets <= 127:
        return xp.int8
    if n_offsets <= 32767:
        return xp.int16
    return xp.int32


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
