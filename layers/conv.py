"""2-D convolution (cross-correlation, as in every deep-learning library), NCHW.

    out[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j]
                               * xpad[n, g*Cg + c, oh*sh + i, ow*sw + j]

where g = f // (F / groups) is the group of filter f, Cg = C / groups, and xpad is
x zero-padded by (ph, pw) on each side. Output size, per axis (floor division):

    OH = floor((H + 2*ph - KH) / sh) + 1,    OW = floor((W + 2*pw - KW) / sw) + 1

``groups`` is AlexNet's two-GPU split (Section 3.2): with groups=2 the first F/2
filters see only the first C/2 channels and the last F/2 only the last C/2
(conv2, conv4, conv5).

The forward and backward use im2col (engine/im2col.py): one GEMM per group forward,
two per group backward, and col2im (the exact adjoint of im2col) for dx. The same
code split over the CPU's threads, and with an im2col buffer kept from call to call,
is in layers/fast/conv.py; on the CPU the 3x3 stride-1 convolutions take Winograd's
route there (layers/fast/winograd.py), with about three times fewer multiplies. ``conv2d_forward_naive`` is the reference with explicit
loops.
"""
from __future__ import annotations

from engine.backend import get_array_module
from engine.im2col import col2im_into, conv_output_size, im2col
from layers._checks import (check_dout, check_float_array, check_positive_int,
                            check_same_backend, check_same_dtype, pair)
from layers.fast import conv as fast


def conv2d_forward(x, w, b, stride=1, pad=0, groups=1, workspace=None):
    """Convolution forward pass, via im2col and one matrix product per group.

    Inputs:
    - x: (N, C, H, W) float32 or float64, NumPy or CuPy.
    - w: (F, C/groups, KH, KW), same dtype and backend (PyTorch/Caffe layout).
    - b: (F,) or None (no bias).
    - stride: int or (sh, sw), each >= 1.
    - pad: int or (ph, pw), each >= 0; zero padding on both sides.
    - groups: int >= 1 dividing C and F.
    - workspace: None, or a dict owned by the caller (the Conv2d layers of a model
      share one) holding the im2col buffer, reused from call to call. The cache then
      keeps x rather than the im2col matrix, and the backward redoes the im2col
      unless the buffer still holds this call's. x must not change in between.

    Returns (out, cache):
    - out: (N, F, OH, OW), C-contiguous, dtype of x,
      OH = (H + 2*ph - KH) // sh + 1, OW = (W + 2*pw - KW) // sw + 1.
    - cache: what conv2d_backward needs (the im2col matrix or x, w, the geometry).

    Raises TypeError for integer or mixed dtypes or mixed backends, ValueError for
    bad shapes, groups, stride or pad; each message names ``conv2d_forward``.
    """
    op = "conv2d_forward"
    (sh, sw), (ph, pw), OH, OW = _check_conv_args(x, w, b, stride, pad, groups, op)
    xp = get_array_module(x)
    if fast.applies(xp, workspace):   # NumPy: the batch over the threads; a kept buffer
        return fast.conv2d_forward(x, w, b, (sh, sw), (ph, pw), groups, (OH, OW), workspace)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg, K = F // groups, Cg * KH * KW          # filters, and rows of cols, per group
    cols = im2col(x, KH, KW, (sh, sw), (ph, pw))   # (C*KH*KW, N*OH*OW), rows (c, i, j)
    w_rows = w.reshape(F, K)                       # a view: rows (c, i, j) match cols
    out = xp.empty((N, F, OH * OW), dtype=x.dtype)
    for g in range(groups):
        # Group g: its filters, and its channels' rows of cols, one contiguous block.
        # Same dtype in and out: float32 stays float32 (no float64 BLAS).
        filters, rows = slice(g * Fg, (g + 1) * Fg), slice(g * K, (g + 1) * K)
        y = w_rows[filters] @ cols[rows]                                  # (Fg, N*OH*OW)
        y = y.reshape(Fg, N, OH * OW).transpose(1, 0, 2)             # to NCHW's order
        if b is None:
            out[:, filters] = y
        else:
            xp.add(y, b[filters, None], out=out[:, filters])
    cache = (cols, None, None, None, tuple(x.shape), w, b is not None, (sh, sw), (ph, pw),
             groups, (OH, OW))
    return out.reshape(N, F, OH, OW), cache


def conv2d_backward(dout, cache, need_dx=True):
    """Convolution backward pass.

    Inputs:
    - dout: (N, F, OH, OW), upstream gradient, dtype of the forward's x.
    - cache: from conv2d_forward.
    - need_dx: False skips dx (returned as None). The first layer's input is the
      image, whose gradient training never uses; skipping it saves a GEMM and a
      col2im.

    Returns (dx, dw, db):
    - dx: (N, C, H, W) = col2im(w_g^T @ dout_g), per group; None if need_dx is False.
    - dw: (F, C/groups, KH, KW) = dout_g @ cols_g^T, per group.
    - db: (F,) = sum of dout over n, oh, ow; None if the forward had b=None.
    """
    cols, x, workspace, token, x_shape, w, has_b, stride, pad, groups, (OH, OW) = cache
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    F, Cg, KH, KW = w.shape
    check_dout("conv2d_backward", dout, w, shape=(N, F, OH, OW))
    if fast.applies(xp, workspace):
        return fast.conv2d_backward(dout, cache, need_dx)
    Fg, K = F // groups, Cg * KH * KW
    w_rows = w.reshape(F, K)
    # dout in the layout of the forward's product, (F, N*OH*OW), columns (n, oh, ow)
    dout_rows = xp.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(F, -1)
    dw = xp.empty((F, K), dtype=dout.dtype)
    for g in range(groups):
        filters, rows = slice(g * Fg, (g + 1) * Fg), slice(g * K, (g + 1) * K)
        # cols[rows].T is a transposed view: BLAS reads it as it is, no copy
        xp.matmul(dout_rows[filters], cols[rows].T, out=dw[filters])          # (Fg, K)
    db = dout_rows.sum(axis=1) if has_b else None
    dx = None
    if need_dx:
        # The column gradients w_g^T @ dout_g, summed back onto the pixels each column
        # entry was copied from by col2im. Their columns are ordered (oh, ow, n),
        # images last, which col2im_into(batch_last=True) adds in longer rows: dout is
        # taken once more in that order.
        dout_rows_images_last = xp.ascontiguousarray(dout.transpose(1, 2, 3, 0)).reshape(F, -1)
        dcols = xp.empty((C * KH * KW, OH * OW * N), dtype=dout.dtype)
        for g in range(groups):
            filters, rows = slice(g * Fg, (g + 1) * Fg), slice(g * K, (g + 1) * K)
            xp.matmul(w_rows[filters].T, dout_rows_images_last[filters], out=dcols[rows])
        dx = xp.empty(x_shape, dtype=dout.dtype)
        col2im_into(dcols.reshape(C, KH, KW, OH, OW, N), dx, stride, pad, batch_last=True)
    return dx, dw.reshape(w.shape), db


def _check_conv_args(x, w, b, stride, pad, groups, op):
    """Validate the inputs of a conv; return (stride, pad, OH, OW) as ints."""
    check_float_array(x, "x", op, ndim=4)
    check_float_array(w, "w", op, ndim=4)
    if b is not None:
        check_float_array(b, "b", op, ndim=1)
    check_same_backend(op, x=x, w=w, b=b)
    check_same_dtype(op, x=x, w=w, b=b)
    check_positive_int(groups, "groups", op)
    stride = pair(stride, "stride", op, minimum=1)
    pad = pair(pad, "pad", op, minimum=0)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    if min(F, Cg, KH, KW) < 1:
        raise ValueError(f"{op}: w must have shape (F, C/groups, KH, KW) with every size "
                         f">= 1, got {tuple(w.shape)}")
    if C % groups:
        raise ValueError(f"{op}: groups={groups} must divide the channels of x, "
                         f"but x has C={C} (shape {tuple(x.shape)})")
    if F % groups:
        raise ValueError(f"{op}: groups={groups} must divide the number of filters, "
                         f"but w has F={F} (shape {tuple(w.shape)})")
    if C != Cg * groups:
        raise ValueError(f"{op}: x has C={C} channels, but w (shape {tuple(w.shape)}) with "
                         f"groups={groups} expects w.shape[1] * groups = {Cg * groups}")
    if b is not None and b.shape != (F,):
        raise ValueError(f"{op}: b must have shape ({F},), one bias per filter, "
                         f"got {tuple(b.shape)}")
    (sh, sw), (ph, pw) = stride, pad
    if KH > H + 2 * ph or KW > W + 2 * pw:
        raise ValueError(f"{op}: kernel {KH}x{KW} is larger than the padded input "
                         f"{H + 2 * ph}x{W + 2 * pw} (x is {H}x{W}, pad ({ph}, {pw}))")
    OH, OW = conv_output_size(H, KH, sh, ph), conv_output_size(W, KW, sw, pw)
    return stride, pad, OH, OW


def conv2d_forward_naive(x, w, b, stride=1, pad=0, groups=1):
    """Reference convolution with explicit loops: slow, for tests and notebooks.

    Same inputs, output and formula as :func:`conv2d_forward`, computed straight
    from the definition, without im2col. Loops over groups and output positions;
    each step takes the (N, C/groups, KH, KW) window under the kernel and sums its
    products with every filter of the group. Returns out only (no cache).
    """
    op = "conv2d_forward_naive"
    (sh, sw), (ph, pw), OH, OW = _check_conv_args(x, w, b, stride, pad, groups, op)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    xpad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph:ph + H, pw:pw + W] = x
    out = xp.zeros((N, F, OH, OW), dtype=x.dtype)
    for g in range(groups):
        wg = w[g * Fg:(g + 1) * Fg]                       # (Fg, Cg, KH, KW)
        for oh in range(OH):
            for ow in range(OW):
                window = xpad[:, g * Cg:(g + 1) * Cg,
                              oh * sh:oh * sh + KH, ow * sw:ow * sw + KW]   # (N, Cg, KH, KW)
                for f in range(Fg):
                    out[:, g * Fg + f, oh, ow] = (window * wg[f]).sum(axis=(1, 2, 3))
    if b is not None:
        out += b[None, :, None, None]
    return out
