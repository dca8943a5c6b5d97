"""2-D convolution (cross-correlation, as in every deep-learning library), NCHW.

    out[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j]
                               * xpad[n, g*Cg + c, oh*sh + i, ow*sw + j]

where g = f // (F / groups) is the group of filter f, Cg = C / groups, and xpad is
x zero-padded by (ph, pw) on each side. Output size, per axis (floor division):

    OH = floor((H + 2*ph - KH) / sh) + 1,    OW = floor((W + 2*pw - KW) / sw) + 1

``groups`` is AlexNet's two-GPU split (Section 3.2): with groups=2 the first F/2
filters see only the first C/2 channels and the last F/2 only the last C/2
(conv2, conv4, conv5).

The fast version uses im2col (engine/im2col.py): one GEMM per group forward, two
per group backward, and col2im (the exact adjoint of im2col) for dx. On NumPy the
batch is split over threads (engine/parallel.py); the plain whole-batch path is the
same code with one thread (``with engine.parallel.threads(1):``).
``conv2d_forward_naive`` is the readable reference, with explicit loops.
"""
from __future__ import annotations

from engine.backend import get_array_module
from engine.im2col import col2im_into, conv_output_size, im2col_into
from engine.parallel import run_parallel
from layers._checks import (check_dout, check_float_array, check_positive_int,
                            check_same_backend, check_same_dtype, pair)


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


def _workspace_cols(workspace, shape, dtype, xp):
    """A (K, M) view into the workspace's buffer, which grows to the largest asked for.

    Why a buffer kept from call to call: a fresh array of hundreds of MB costs a page
    fault per 4 KiB page the first time it is written (the OS hands out zeroed pages
    lazily), every step. Why one buffer shared by all the conv layers of a network:
    the mini net's im2col matrices add up to 385 MB at batch 128, the largest alone
    is 184 MB; keeping only one costs an im2col per layer in the backward (a copy,
    cheap next to the three matrix products) and halves the memory of a training
    step.
    """
    need = shape[0] * shape[1]
    buf = workspace.get("cols")
    if buf is None or buf.size < need or buf.dtype != dtype or get_array_module(buf) is not xp:
        workspace["cols"] = None                 # free the old buffer before the new one
        buf = workspace["cols"] = xp.empty(need, dtype=dtype)
    return buf[:need].reshape(shape)


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

    On NumPy the batch is split over threads (engine/parallel.py): each thread
    unfolds its images into its columns of the shared im2col matrix, multiplies them
    (one-thread BLAS) and writes its images of out. On CuPy, or with one thread, the
    same code runs once on the whole batch.
    """
    op = "conv2d_forward"
    (sh, sw), (ph, pw), OH, OW = _check_conv_args(x, w, b, stride, pad, groups, op)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg, K, P = F // groups, Cg * KH * KW, OH * OW

    # cols: (C*KH*KW, N*OH*OW), rows (c, i, j), columns (n, oh, ow); the columns of
    # images lo..hi-1 are the contiguous column block [lo*P, hi*P).
    shape = (C * KH * KW, N * P)
    if workspace is None:
        cols, token = xp.empty(shape, dtype=x.dtype), None
    else:
        cols, token = _workspace_cols(workspace, shape, x.dtype, xp), object()
        workspace["owner"] = token          # the buffer now holds this call's columns
    cols6 = cols.reshape(C, KH, KW, N, OH, OW)
    w2 = w.reshape(F, K)                             # a view: rows (c, i, j) match cols
    out = xp.empty((N, F, OH, OW), dtype=x.dtype)
    out3 = out.reshape(N, F, P)
    bias = b.reshape(F, 1) if b is not None else None

    def images(lo, hi):
        im2col_into(x[lo:hi], cols6[:, :, :, lo:hi], (sh, sw), (ph, pw))
        for g in range(groups):
            fs = slice(g * Fg, (g + 1) * Fg)
            # Rows of cols are ordered (c, i, j), so group g's channels are the
            # contiguous row block [g*K, (g+1)*K) and its filters the rows fs of w2.
            # Same dtype in and out: float32 stays float32 (no float64 BLAS).
            y = w2[fs] @ cols[g * K:(g + 1) * K, lo * P:hi * P]      # (Fg, n*P)
            # The product is (Fg, n, OH*OW); out is NCHW. One pass moves it into
            # place and adds the bias on the way.
            y = y.reshape(Fg, hi - lo, P).transpose(1, 0, 2)
            if bias is None:
                out3[lo:hi, fs] = y
            else:
                xp.add(y, bias[fs], out=out3[lo:hi, fs])

    run_parallel(images, N, xp)
    geometry = (tuple(x.shape), w, b is not None, (sh, sw), (ph, pw), groups, (OH, OW))
    if workspace is None:
        return out, (cols, None, None, None) + geometry
    return out, (None, x, workspace, token) + geometry


def conv2d_backward(dout, cache, need_dx=True):
    """Convolution backward pass.

    Inputs:
    - dout: (N, F, OH, OW), upstream gradient, dtype of the forward's x.
    - cache: from conv2d_forward.
    - need_dx: False skips dx (returned as None). The first layer's input is the
      image, whose gradient training never uses; skipping it saves a GEMM and a
      col2im, about a third of conv1's backward.

    Returns (dx, dw, db):
    - dx: (N, C, H, W) = col2im(w_g^T @ dout_g), per group; None if need_dx is False.
    - dw: (F, C/groups, KH, KW) = dout_g @ cols_g^T, per group.
    - db: (F,) = sum of dout over n, oh, ow; None if the forward had b=None.
    """
    cols, x, workspace, token, x_shape, w, has_b, stride, pad, groups, (OH, OW) = cache
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    F, Cg, KH, KW = w.shape
    Fg, K, P = F // groups, Cg * KH * KW, OH * OW
    check_dout("conv2d_backward", dout, w, shape=(N, F, OH, OW))
    redo_im2col = False
    if workspace is not None:
        redo_im2col = workspace.get("owner") is not token   # another call used the buffer
        cols = _workspace_cols(workspace, (C * KH * KW, N * P), w.dtype, xp)
        # From here on the buffer is ours to overwrite with the column gradients.
        workspace["owner"] = None
    cols6 = cols.reshape(C, KH, KW, N, OH, OW)    # a view; [:, :, :, lo:hi] too
    w2 = w.reshape(F, K)
    dout3 = dout.reshape(N, F, P)
    dx = xp.empty(x_shape, dtype=dout.dtype) if need_dx else None

    def images(lo, hi):
        """dw and db of images lo..hi-1 (partial sums), and their dx."""
        ms = slice(lo * P, hi * P)
        if redo_im2col:
            im2col_into(x[lo:hi], cols6[:, :, :, lo:hi], stride, pad)
        # dout to the GEMM's layout (F, n*OH*OW): one copy, the inverse of the
        # forward's output transpose.
        d2 = xp.ascontiguousarray(dout3[lo:hi].transpose(1, 0, 2)).reshape(F, -1)
        dw = xp.empty((F, K), dtype=dout.dtype)      # this piece's part of the sum
        for g in range(groups):
            # cols[...].T and w2[...].T below are transposed views: BLAS reads them as
            # they are, no copy.
            xp.matmul(d2[g * Fg:(g + 1) * Fg], cols[g * K:(g + 1) * K, ms].T,
                      out=dw[g * Fg:(g + 1) * Fg])                      # (Fg, K)
        if need_dx:
            # The column gradients go over this piece's columns of the workspace
            # (used up by the dw above); without a workspace, to a new array.
            n = hi - lo
            dcols = cols[:, ms] if workspace is not None else \
                xp.empty((C * KH * KW, n * P), dtype=dout.dtype)
            # Their columns are ordered (oh, ow, n), images last, because col2im then
            # adds longer rows (see col2im_into): that takes dout once more in that
            # order. It is a view of dcols either way (only its column axis is split).
            d2b = xp.ascontiguousarray(dout3[lo:hi].transpose(1, 2, 0)).reshape(F, -1)
            for g in range(groups):
                xp.matmul(w2[g * Fg:(g + 1) * Fg].T, d2b[g * Fg:(g + 1) * Fg],
                          out=dcols[g * K:(g + 1) * K])                 # (K, OH*OW*n)
            col2im_into(dcols.reshape(C, KH, KW, OH, OW, n), dx[lo:hi], stride, pad,
                        batch_last=True)
        return dw, (d2.sum(axis=1) if has_b else None)

    parts = run_parallel(images, N, xp)
    dw = parts[0][0]
    for p in parts[1:]:
        dw += p[0]
    dw = dw.reshape(w.shape)
    db = None
    if has_b:
        db = parts[0][1]
        for p in parts[1:]:
            db += p[1]
    return dx, dw, db


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
