"""im2col / col2im: turn a convolution into one matrix product.

A convolution slides a (C, KH, KW) window over the padded input. ``im2col`` copies
every window into one column of a matrix, so that the convolution becomes

    out[f, (n, oh, ow)] = sum_k  w[f, k] * cols[k, (n, oh, ow)]      k = (c, i, j)

one matrix product that BLAS (NumPy) or cuBLAS (CuPy) runs at full speed.
``col2im`` is its adjoint (its transpose as a linear map): it sums every column
entry back onto the input pixel it was copied from, which is exactly what the
backward pass needs for ``dx``. Both satisfy ``<im2col(x), y> == <x, col2im(y)>``.

Column layout: ``cols`` has shape (C*KH*KW, N*OH*OW), rows ordered (c, i, j) and
columns ordered (n, oh, ow); in memory it is the array (C, KH, KW, N, OH, OW).
Why this layout (docs/PERFORMANCE.md, "How the fast routes came about", has the
timings of the three layouts that were tried):

- Each conv (per group) is ONE large GEMM, (F, K) @ (K, N*OH*OW), and the backward
  two more, dw = dout @ cols.T and dcols = w.T @ dout. With columns per image,
  (N, C*KH*KW, OH*OW), a batched matmul runs N small GEMMs instead, and its dw needs
  a tensordot that copies cols again.
- Rows ordered (c, i, j) match w.reshape(F, C*KH*KW) with no copy of w, and the
  rows of one channel group are one contiguous block, so groups=2 is a row slice.
- Copying one kernel offset (i, j) fills cols[:, i, j] of shape (C, N, OH, OW),
  whose innermost run is a whole output row (OW values). Rows ordered (i, j, c), as
  an NHWC layout gives them, have C values as their innermost run: 3 for conv1.
- The cost: the GEMM gives (F, N, OH, OW), so the conv transposes its output to
  NCHW, one copy of the output, cheap next to the GEMMs.

Both maps loop only over the KH x KW kernel offsets; each step copies (or adds) one
strided slice of the whole batch. No ``np.add.at``, no loop over pixels or images.

``im2col`` and ``col2im`` take and return whole arrays. The convolution
(layers/conv.py) calls ``im2col_into`` and ``col2im_into``, the same maps written
into given arrays: on the CPU each thread fills the columns of a few images of one
shared matrix. Where the stride is above 1, and on CuPy, those two hand over to
engine/fast_im2col.py (the CPU's stride phases, CuPy's few calls, the CUDA kernels),
which computes the same numbers.
"""
from __future__ import annotations

import numbers

from engine import fast_im2col
from engine.backend import get_array_module


def conv_output_size(size: int, k: int, stride: int = 1, pad: int = 0) -> int:
    """Output length along one axis: floor((size + 2*pad - k) / stride) + 1.

    Integer floor division throughout (a float division is a classic im2col bug).
    Returns a value < 1 when the kernel does not fit in the padded input.
    """
    return (int(size) + 2 * int(pad) - int(k)) // int(stride) + 1


def im2col(x, kh: int, kw: int, stride=(1, 1), pad=(0, 0)):
    """Unfold every (C, KH, KW) window of ``x`` into a column.

    Inputs:
    - x: (N, C, H, W) array (NumPy or CuPy); its dtype is kept.
    - kh, kw: kernel height and width.
    - stride, pad: int or (h, w) pair. Zero padding on both sides.

    Returns cols: (C*KH*KW, N*OH*OW), a C-contiguous array with
        cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i, ow*sw + j]
    where OH = (H + 2*ph - KH) // sh + 1 and OW = (W + 2*pw - KW) // sw + 1.
    """
    xp = get_array_module(x)
    N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW = _geometry(x.shape, kh, kw, stride, pad,
                                                           "im2col")
    cols = xp.empty((C, kh, kw, N, OH, OW), dtype=x.dtype)
    im2col_into(x, cols, (sh, sw), (ph, pw))
    return cols.reshape(C * kh * kw, N * OH * OW)


def im2col_into(x, cols, stride, pad):
    """The work of :func:`im2col`, written into ``cols``, a (C, KH, KW, N, OH, OW) array:

        cols[c, i, j, n, oh, ow] = xpad[n, c, oh*sh + i, ow*sw + j]

    ``cols`` may be a view into a larger buffer, e.g. the columns of a few images of
    a batch: the convolution fills one buffer from several threads, a slice of the
    batch each (layers/fast/conv.py). stride and pad are (h, w) int pairs, not
    validated.
    """
    xp = get_array_module(x)
    if fast_im2col.applies(xp, stride):    # stride > 1 on the CPU; CuPy's few calls, kernels
        return fast_im2col.im2col_into(x, cols, stride, pad)
    N, C, H, W = x.shape
    kh, kw, OH, OW = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    (sh, sw), (ph, pw) = stride, pad
    # x zero-padded, channels first as cols is, so that each offset's copy below
    # reads and writes in the same (c, n, row, column) order
    xpad = xp.zeros((C, N, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph:ph + H, pw:pw + W] = x.transpose(1, 0, 2, 3)
    for i in range(kh):
        for j in range(kw):
            # offset (i, j) of every window: rows i, i + sh, ..., columns j, j + sw, ...
            cols[:, i, j] = xpad[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]


def col2im(cols, x_shape, kh: int, kw: int, stride=(1, 1), pad=(0, 0)):
    """Adjoint of :func:`im2col`: add every column entry back onto its input pixel.

    Inputs:
    - cols: (C*KH*KW, N*OH*OW) in the layout im2col returns (any array with that many
      elements in that order is accepted); its dtype is kept.
    - x_shape: (N, C, H, W), the shape of the im2col input.
    - kh, kw, stride, pad: as given to im2col.

    Returns dx: (N, C, H, W), C-contiguous, with
        dx[n, c, y, x] = sum of cols[(c, i, j), (n, oh, ow)] over all (i, j, oh, ow)
                         with oh*sh + i = y + ph and ow*sw + j = x + pw.
    Entries that fall in the padding are dropped (the padding is a constant).
    """
    xp = get_array_module(cols)
    N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW = _geometry(x_shape, kh, kw, stride, pad,
                                                           "col2im")
    if cols.size != C * kh * kw * N * OH * OW:
        raise ValueError(f"col2im: cols must have shape ({C * kh * kw}, {N * OH * OW}) for "
                         f"x_shape {tuple(x_shape)}, got {tuple(cols.shape)}")
    dx = xp.empty((N, C, H, W), dtype=cols.dtype)
    col2im_into(cols.reshape(C, kh, kw, N, OH, OW), dx, (sh, sw), (ph, pw))
    return dx


def col2im_into(cols, dx, stride, pad, batch_last=False):
    """The work of :func:`col2im`: sum ``cols`` (C, KH, KW, N, OH, OW) into ``dx``.

    ``dx`` (N, C, H, W) is overwritten; both may be views (a slice of the batch, as
    the convolution's threads use them). stride and pad are (h, w) int pairs.

    ``batch_last=True`` takes columns ordered (oh, ow, n) instead, cols of shape
    (C, KH, KW, OH, OW, N): the convolution's backward produces them so, because on
    the CPU each add then runs over rows of OW*N values rather than OW
    (engine/fast_im2col.py: col2im_loops).
    """
    xp = get_array_module(cols)
    if fast_im2col.applies(xp, stride, batch_last):
        return fast_im2col.col2im_into(cols, dx, stride, pad, batch_last)
    C, kh, kw, N, OH, OW = cols.shape
    H, W = dx.shape[2], dx.shape[3]
    (sh, sw), (ph, pw) = stride, pad
    dxpad = xp.zeros((C, N, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # Windows overlap, so a pixel is reached by several offsets; within one
            # offset every window reaches a different pixel, so '+=' on the strided
            # view adds each term once (no np.add.at needed).
            dxpad[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw] += cols[:, i, j]
    dx[...] = dxpad[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)


def _hw(value, name: str, op: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair -> (h, w) ints >= minimum, else ValueError naming op."""
    h, w = value if isinstance(value, (tuple, list)) else (value, value)
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            raise ValueError(f"{op}: {name} must be an int >= {minimum} or a pair of them, "
                             f"got {value!r}")
    return int(h), int(w)


def _geometry(x_shape, kh, kw, stride, pad, op):
    """Validated sizes shared by im2col and col2im."""
    if len(x_shape) != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    kh, kw = _hw((kh, kw), "kernel size", op, 1)
    sh, sw = _hw(stride, "stride", op, 1)
    ph, pw = _hw(pad, "pad", op, 0)
    N, C, H, W = (int(s) for s in x_shape)
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: kernel {kh}x{kw} is larger than the padded input "
                         f"{H + 2 * ph}x{W + 2 * pw} (H, W = {H}, {W}, pad {ph}, {pw})")
    return N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW
