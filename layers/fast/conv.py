"""The fast route of the convolution (layers/conv.py reads it top-down).

The same im2col and matrix products as the readable route, with two additions:

- on NumPy the batch is split over the threads (engine/parallel.py): each thread
  unfolds its images into its columns of one shared im2col matrix, multiplies them
  (one-thread BLAS) and writes its images of out; the weight gradient is the sum of
  the pieces' parts;
- with a ``workspace`` (the Conv2d layers of a model share one), the im2col matrix is
  a buffer kept from call to call and shared by the layers, and the backward writes
  the column gradients over it.

With one piece and no workspace (CuPy without one) this is the readable route, call
for call.
"""
from __future__ import annotations

import numpy as np

from engine.backend import get_array_module
from engine.im2col import col2im_into, im2col_into
from engine.parallel import run_parallel
from layers.fast import winograd


def applies(xp, workspace) -> bool:
    """Whether conv2d_forward / conv2d_backward hand over to this module: on NumPy
    (the threads), and wherever the caller gives a workspace."""
    return xp is np or workspace is not None


def conv2d_forward(x, w, b, stride, pad, groups, out_size, workspace):
    """conv2d_forward for checked arguments; (out, cache) as layers/conv.py returns
    them. stride, pad and out_size (OH, OW) are int pairs."""
    xp = get_array_module(x)
    if xp is np and winograd.applies(x.shape, w.shape, stride):     # 3x3, stride 1
        return winograd.conv2d_forward(x, w, b, pad, groups, out_size)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    OH, OW = out_size
    Fg, K, P = F // groups, Cg * KH * KW, OH * OW

    # cols: (C*KH*KW, N*OH*OW), rows (c, i, j), columns (n, oh, ow); the columns of
    # images lo..hi-1 are the contiguous column block [lo*P, hi*P).
    shape = (C * KH * KW, N * P)
    if workspace is None:
        cols, token = xp.empty(shape, dtype=x.dtype), None
    else:
        cols, token = _workspace_cols(workspace, shape, x.dtype, xp), object()
        workspace["owner"] = token          # the buffer now holds this call's columns
    windows = cols.reshape(C, KH, KW, N, OH, OW)    # the same memory, one axis per index
    w_rows = w.reshape(F, K)                        # a view: rows (c, i, j) match cols
    out = xp.empty((N, F, OH, OW), dtype=x.dtype)
    out_maps = out.reshape(N, F, P)
    bias = b.reshape(F, 1) if b is not None else None

    def images(lo, hi):
        im2col_into(x[lo:hi], windows[:, :, :, lo:hi], stride, pad)
        for g in range(groups):
            filters = slice(g * Fg, (g + 1) * Fg)
            # Rows of cols are ordered (c, i, j), so group g's channels are the
            # contiguous row block [g*K, (g+1)*K) and its filters the rows [g*Fg, (g+1)*Fg)
            # of w_rows.
            # Same dtype in and out: float32 stays float32 (no float64 BLAS).
            y = w_rows[filters] @ cols[g * K:(g + 1) * K, lo * P:hi * P]      # (Fg, n*P)
            # The product is (Fg, n, OH*OW); out is NCHW. One pass moves it into
            # place and adds the bias on the way.
            y = y.reshape(Fg, hi - lo, P).transpose(1, 0, 2)
            if bias is None:
                out_maps[lo:hi, filters] = y
            else:
                xp.add(y, bias[filters], out=out_maps[lo:hi, filters])

    run_parallel(images, N, xp)
    geometry = (tuple(x.shape), w, b is not None, tuple(stride), tuple(pad), groups,
                (OH, OW))
    if workspace is None:
        return out, (cols, None, None, None) + geometry
    return out, (None, x, workspace, token) + geometry


def conv2d_backward(dout, cache, need_dx):
    """conv2d_backward for a checked dout: (dx, dw, db)."""
    if isinstance(cache[0], winograd.Saved):         # the forward took Winograd's route
        return winograd.conv2d_backward(dout, cache, need_dx)
    cols, x, workspace, token, x_shape, w, has_b, stride, pad, groups, (OH, OW) = cache
    xp = get_array_module(dout)
    N, C, H, W = x_shape
    F, Cg, KH, KW = w.shape
    Fg, K, P = F // groups, Cg * KH * KW, OH * OW
    redo_im2col = False
    if workspace is not None:
        redo_im2col = workspace.get("owner") is not token   # another call used the buffer
        cols = _workspace_cols(workspace, (C * KH * KW, N * P), w.dtype, xp)
        # From here on the buffer is ours to overwrite with the column gradients.
        workspace["owner"] = None
    windows = cols.reshape(C, KH, KW, N, OH, OW)    # a view; [:, :, :, lo:hi] too
    w_rows = w.reshape(F, K)
    dout_maps = dout.reshape(N, F, P)
    dx = xp.empty(x_shape, dtype=dout.dtype) if need_dx else None

    def images(lo, hi):
        """dw and db of images lo..hi-1 (partial sums), and their dx."""
        piece_cols = slice(lo * P, hi * P)
        if redo_im2col:
            im2col_into(x[lo:hi], windows[:, :, :, lo:hi], stride, pad)
        # dout to the GEMM's layout (F, n*OH*OW): one copy, the inverse of the
        # forward's output transpose.
        dout_rows = xp.ascontiguousarray(dout_maps[lo:hi].transpose(1, 0, 2)).reshape(F, -1)
        dw = xp.empty((F, K), dtype=dout.dtype)      # this piece's part of the sum
        for g in range(groups):
            # cols[...].T and w_rows[...].T below are transposed views: BLAS reads them
            # as they are, no copy.
            xp.matmul(dout_rows[g * Fg:(g + 1) * Fg], cols[g * K:(g + 1) * K, piece_cols].T,
                      out=dw[g * Fg:(g + 1) * Fg])                      # (Fg, K)
        if need_dx:
            # The column gradients go over this piece's columns of the workspace
            # (used up by the dw above); without a workspace, to a new array.
            n = hi - lo
            dcols = cols[:, piece_cols] if workspace is not None else \
                xp.empty((C * KH * KW, n * P), dtype=dout.dtype)
            # Their columns are ordered (oh, ow, n), images last, because col2im then
            # adds longer rows (see col2im_into): that takes dout once more in that
            # order. It is a view of dcols either way (only its column axis is split).
            dout_rows_images_last = xp.ascontiguousarray(
                dout_maps[lo:hi].transpose(1, 2, 0)).reshape(F, -1)
            for g in range(groups):
                xp.matmul(w_rows[g * Fg:(g + 1) * Fg].T,
                          dout_rows_images_last[g * Fg:(g + 1) * Fg],
                          out=dcols[g * K:(g + 1) * K])                 # (K, OH*OW*n)
            col2im_into(dcols.reshape(C, KH, KW, OH, OW, n), dx[lo:hi], stride, pad,
                        batch_last=True)
        return dw, (dout_rows.sum(axis=1) if has_b else None)

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


def _workspace_cols(workspace, shape, dtype, xp):
    """A (K, M) view into the workspace's buffer, which grows to the largest asked for.

    Why a buffer kept from call to call: a fresh array of hundreds of MB costs a page
    fault per 4 KiB page the first time it is written (the OS hands out zeroed pages
    lazily), every step. Why one buffer shared by all the conv layers of a network:
    the largest im2col matrix is about half of all of them together, so keeping only
    one costs an im2col per layer in the backward (a copy, cheap next to the three
    matrix products) and about halves the memory of a training step.
    """
    need = shape[0] * shape[1]
    buf = workspace.get("cols")
    if buf is None or buf.size < need or buf.dtype != dtype or get_array_module(buf) is not xp:
        workspace["cols"] = None                 # free the old buffer before the new one
        buf = workspace["cols"] = xp.empty(need, dtype=dtype)
    return buf[:need].reshape(shape)
