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
Why this layout (measured on a shared 2-core CPU, NumPy 2.4 + OpenBLAS, float32,
forward + backward of the whole conv, best of 5 runs interleaved; the machine is
noisy, +-20%, but the ranking held over every run):

                                          x (128,64,14,14)      x (32,3,227,227)
                                          w (192,64,5,5) pad 2  w (96,3,11,11) stride 4
    A (N, C*KH*KW, OH*OW), batched matmul     719 ms                462 ms
    B (C*KH*KW, N*OH*OW), one GEMM            447 ms  <- chosen     343 ms
    C (N*OH*OW, KH*KW*C), NHWC rows           564 ms               1426 ms

- B makes each conv (per group) ONE large GEMM, (F, K) @ (K, N*OH*OW), and the
  backward two more, dw = dout @ cols.T and dcols = w.T @ dout. The batched matmul
  of layout A runs N small GEMMs (K x OH*OW each) and its dw needs a tensordot
  that copies cols again.
- Rows ordered (c, i, j) match w.reshape(F, C*KH*KW) with no copy of w, and the
  rows of one channel group are one contiguous block, so groups=2 is a row slice.
- Copying one kernel offset (i, j) fills cols[:, i, j] of shape (C, N, OH, OW),
  whose innermost run is a whole output row (OW values). Layout C's innermost run
  is C values, 3 for conv1, which made its copies 3x slower there.
- The cost: the GEMM gives (F, N, OH, OW), so the conv transposes its output to
  NCHW (one copy of the output, ~10 ms of the 447, cheap next to the GEMMs).

Both functions loop only over the KH x KW kernel offsets; each step copies (or
adds) one strided slice of the whole batch. No ``np.add.at``, no loop over pixels
or images. The array module comes from the input, so the code runs on CuPy too; on
CuPy, though, ``im2col_into`` and ``col2im_into`` hand over to ``im2col_strided`` and
``col2im_strided`` (at the end of this file), which read every window at once through
one strided view: there each call costs the host microseconds, and a few calls beat
3-4 per kernel offset.

``im2col`` and ``col2im`` are the plain whole-batch versions. The convolution
(layers/conv.py) calls ``im2col_into`` and ``col2im_into``, the same loops writing
into a given array: on the CPU each thread fills the columns of a few images of one
shared matrix, so the GEMM above is cut into one product per piece of the batch.
For its dx the convolution orders the column gradients (oh, ow, n) instead, which
``col2im_into(..., batch_last=True)`` takes (the reason is in its docstring).
"""
from __future__ import annotations

import numbers

from engine.backend import GpuKernel, few_calls, get_array_module, gpu_kernels


def conv_output_size(size: int, k: int, stride: int = 1, pad: int = 0) -> int:
    """Output length along one axis: floor((size + 2*pad - k) / stride) + 1.

    Integer floor division throughout (a float division is a classic im2col bug).
    Returns a value < 1 when the kernel does not fit in the padded input.
    """
    return (int(size) + 2 * int(pad) - int(k)) // int(stride) + 1


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


def im2col_into(x, cols6, stride, pad):
    """The work of :func:`im2col`, written into ``cols6``, a (C, KH, KW, N, OH, OW) array.

    ``cols6`` may be a view into a larger buffer, e.g. the columns of a few images of
    a batch: the convolution fills one buffer from several threads, a slice of the
    batch each (layers/conv.py). stride and pad are (h, w) int pairs, not validated.
    NumPy arrays go through :func:`im2col_loops`, CuPy's through :func:`im2col_strided`
    (the note above it says why), or :func:`im2col_kernel` with ALEXNET_GPU_ROUTES=kernels.
    """
    xp = get_array_module(x)
    if gpu_kernels(xp):
        im2col_kernel(x, cols6, stride, pad)
    elif few_calls(xp):
        im2col_strided(x, cols6, stride, pad)
    else:
        im2col_loops(x, cols6, stride, pad)


def im2col_loops(x, cols6, stride, pad):
    """:func:`im2col_into` by one strided slice copy per kernel offset (NumPy's way)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, OH, OW = cols6.shape[1], cols6.shape[2], cols6.shape[4], cols6.shape[5]
    (sh, sw), (ph, pw) = stride, pad
    # The plain loop reads xpad[:, :, i::sh, j::sw] for every offset (i, j). With
    # stride 4 (conv1) those are reads 4 values apart, one per cache line, 121 times
    # over. Instead xpad is split once into its sh x sw stride phases, as col2im_into
    # does: padded row y = q*sh + a is row q of phase a, and offset i reads phase
    # i % sh from row i // sh on. Every offset then copies dense rows (measured 1.7x
    # faster for conv1 at batch 32 on CPU). With stride 1 there is one phase: xpad.
    #
    # phases[a, b, c, n, q, r] = xpad[n, c, q*sh + a, r*sw + b], channels first so
    # that each offset's slice reads in the (c, n, row, col) order cols is written in.
    HQ, WQ = (kh - 1) // sh + OH, (kw - 1) // sw + OW      # rows, cols used per phase
    phases = xp.zeros((sh, sw, C, N, HQ, WQ), dtype=x.dtype)
    xt = x.transpose(1, 0, 2, 3)
    for a in range(sh):
        # q0..q1-1: the rows q of phase a that hold image rows (y - ph in [0, H));
        # the others are padding and stay zero. Likewise r0..r1-1 for columns.
        q0, q1 = -(-max(ph - a, 0) // sh), min(HQ, (H + ph - a - 1) // sh + 1)
        for b in range(sw):
            r0, r1 = -(-max(pw - b, 0) // sw), min(WQ, (W + pw - b - 1) // sw + 1)
            if q1 > q0 and r1 > r0:
                phases[a, b, :, :, q0:q1, r0:r1] = xt[
                    :, :, q0 * sh + a - ph:(q1 - 1) * sh + a - ph + 1:sh,
                    r0 * sw + b - pw:(r1 - 1) * sw + b - pw + 1:sw]
    for i in range(kh):
        a, q = i % sh, i // sh
        for j in range(kw):
            b, r = j % sw, j // sw
            cols6[:, i, j] = phases[a, b, :, :, q:q + OH, r:r + OW]


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


def col2im_into(cols6, dx, stride, pad, batch_last=False):
    """The work of :func:`col2im`: sum ``cols6`` (C, KH, KW, N, OH, OW) into ``dx``.

    ``dx`` (N, C, H, W) is overwritten; both may be views (a slice of the batch, as
    the convolution's threads use them). stride and pad are (h, w) int pairs.

    ``batch_last=True`` takes columns ordered (oh, ow, n) instead, cols6 of shape
    (C, KH, KW, OH, OW, N): the convolution's backward produces them so when it can.
    Why: each '+=' below then runs over rows of OW*N contiguous values rather than
    OW; for the 7x7 and 13x13 maps of conv3-conv5 NumPy spent most of its time
    starting short loops, and this layout made col2im 2x-3x faster.
    """
    xp = get_array_module(cols6)
    if gpu_kernels(xp):                        # CuPy's ways, as in im2col_into
        col2im_kernel(cols6, dx, stride, pad, batch_last)
    elif few_calls(xp):
        col2im_strided(cols6, dx, stride, pad, batch_last)
    else:
        col2im_loops(cols6, dx, stride, pad, batch_last)


def col2im_loops(cols6, dx, stride, pad, batch_last=False):
    """:func:`col2im_into` by one strided slice add per kernel offset (NumPy's way)."""
    xp = get_array_module(cols6)
    if batch_last:
        C, kh, kw, OH, OW, N = cols6.shape
    else:
        C, kh, kw, N, OH, OW = cols6.shape
    H, W = dx.shape[2], dx.shape[3]
    (sh, sw), (ph, pw) = stride, pad
    # Why the phase split: with stride s, ``dxpad[..., i::s, j::s] += ...`` is a
    # read-modify-write with a stride-s inner loop, which for conv1 (11x11, stride 4)
    # was 2x slower than this. Padded row y = q*sh + a belongs to phase a = y % sh at
    # position q = y // sh, and offset i only touches phase i % sh, at rows
    # i // sh + oh. So each phase is accumulated in its own dense array, where every
    # offset adds one contiguous-row slice, and the phases are interleaved once at
    # the end. With stride 1 there is a single phase and this is the plain loop.
    HQ = max((kh - 1) // sh + OH, -(-(H + 2 * ph) // sh))   # rows per phase, ceil
    WQ = max((kw - 1) // sw + OW, -(-(W + 2 * pw) // sw))
    if batch_last:
        acc = xp.zeros((sh, sw, C, HQ, WQ, N), dtype=cols6.dtype)
    else:
        acc = xp.zeros((sh, sw, C, N, HQ, WQ), dtype=cols6.dtype)
    for i in range(kh):
        a, q = i % sh, i // sh
        for j in range(kw):
            b, r = j % sw, j // sw
            if batch_last:
                acc[a, b, :, q:q + OH, r:r + OW] += cols6[:, i, j]
            else:
                acc[a, b, :, :, q:q + OH, r:r + OW] += cols6[:, i, j]
    # acc[a, b, c, n, q, r] (or [a, b, c, q, r, n]) is dxpad[n, c, q*sh + a, r*sw + b]:
    # interleave the phases and restore (N, C) order in one copy.
    order = (5, 2, 3, 0, 4, 1) if batch_last else (3, 2, 4, 0, 5, 1)
    dxpad = acc.transpose(order).reshape(N, C, HQ * sh, WQ * sw)
    dx[...] = dxpad[:, :, ph:ph + H, pw:pw + W]


# On CuPy: the same two maps in a handful of whole-array calls.
#
# On a GPU each call (a kernel launch, or only a view) costs the host some
# microseconds of Python and CuPy whatever its size, and the small `mini` net gives
# each kernel little work: a training step waits on the host. The loops above make
# 3-4 calls per kernel offset (75-100 for a 5x5 kernel, each way); the versions below
# make about ten, by reading all the windows at once through one strided view
# (bench/calls.py counts the calls per layer). On NumPy the loops stay: there the
# per-call cost is small and a copy through a 6-D strided view runs with inner loops
# as short as a kernel row, slower than the loops' whole-row slices.

def _window_strides(s, sh, sw):
    """Strides of the view v[c, i, j, n, oh, ow] = a[c, n, oh*sh + i, ow*sw + j] of an
    array a (C, N, H, W) with strides s."""
    return (s[0], s[2], s[3], s[1], s[2] * sh, s[3] * sw)


def im2col_strided(x, cols6, stride, pad):
    """:func:`im2col_into` as one copy through a strided view of every window.

    cols6[c, i, j, n, oh, ow] = xpad[n, c, oh*sh + i, ow*sw + j]: pad x (channels
    first, the order of cols6), view it as (C, KH, KW, N, OH, OW) with
    ``as_strided`` (a window's rows and columns are steps of the input's rows and
    columns; the next window is sh rows or sw columns further), copy that view.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, OH, OW = cols6.shape[1], cols6.shape[2], cols6.shape[4], cols6.shape[5]
    (sh, sw), (ph, pw) = stride, pad
    xpad = xp.zeros((C, N, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph:ph + H, pw:pw + W] = x.transpose(1, 0, 2, 3)
    cols6[...] = xp.lib.stride_tricks.as_strided(
        xpad, shape=(C, kh, kw, N, OH, OW), strides=_window_strides(xpad.strides, sh, sw))


def col2im_strided(cols6, dx, stride, pad, batch_last=False):
    """:func:`col2im_into` as one sum over a strided view: a gather, no scatter.

    dxpad[n, c, y, x] = sum over (i, j) of cols6[c, i, j, n, oh, ow] where
    oh*sh + i = y and ow*sw + j = x. Put each column entry at row kh-1 + oh*sh and
    column kw-1 + ow*sw of a zero array D (C, KH, KW, N, Hp + kh-1, Wp + kw-1), so
    that the entry for (i, j, y, x), where it exists, is D[c, i, j, n, y - i + kh-1,
    x - j + kw-1], and zero where no window put anything there. Seen through
    ``as_strided`` as (C, KH, KW, N, Hp, Wp), with D's row stride subtracted from the
    i step (and its column stride from the j step), D is summed over (i, j) by one
    reduction. Every stride stays positive; each output sums its kh*kw terms in a
    fixed order, so the result does not change from run to run (a scatter-add with
    atomics would).

    The price is memory: D holds (Hp + kh-1)(Wp + kw-1) positions per (c, i, j, n)
    where the columns hold OH*OW, about 1.7 times the columns for a 5x5 kernel at
    stride 1 on 27x27 maps (1.5 GB, from the shapes, for the paper net's conv2 at
    batch 128) and more with strides (4.5 to 5.3 times for 3x3/2 pooling). Where GPU
    memory is short, ALEXNET_GPU_ROUTES=loops (engine/backend.py) takes the loops.
    """
    xp = get_array_module(cols6)
    if batch_last:                                   # (C, KH, KW, OH, OW, N): a view
        cols6 = cols6.transpose(0, 1, 2, 5, 3, 4)
    C, kh, kw, N, OH, OW = cols6.shape
    H, W = dx.shape[2], dx.shape[3]
    (sh, sw), (ph, pw) = stride, pad
    Hp, Wp = H + 2 * ph, W + 2 * pw
    D = xp.zeros((C, kh, kw, N, Hp + kh - 1, Wp + kw - 1), dtype=cols6.dtype)
    D[:, :, :, :, kh - 1:kh - 1 + (OH - 1) * sh + 1:sh,
      kw - 1:kw - 1 + (OW - 1) * sw + 1:sw] = cols6
    s = D.strides
    terms = xp.lib.stride_tricks.as_strided(
        D[:, :, :, :, kh - 1:, kw - 1:], shape=(C, kh, kw, N, Hp, Wp),
        strides=(s[0], s[1] - s[4], s[2] - s[5], s[3], s[4], s[5]))
    dxpad = terms.sum(axis=(1, 2))                   # (C, N, Hp, Wp)
    dx[...] = dxpad[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)


# The two maps as GPU kernels (engine/backend.py: GpuKernel), for CuPy with
# ALEXNET_GPU_ROUTES=kernels. im2col_strided pads a copy of x before its strided copy;
# im2col_kernel reads x where a window lies inside it and writes 0 where it lies in
# the padding: one kernel, a thread per column entry. col2im_strided spreads the
# columns into a zero array 1.7 to 5 times their size before its sum; col2im_kernel
# has a thread per input pixel, which sums the column entries copied from it (at
# most ceil(KH/sh) x ceil(KW/sw) of them) straight from the columns: a gather, so,
# as there, no atomics and the same result from run to run.
_IM2COL = GpuKernel(
    "alexnet_im2col",
    "raw T x, int32 N, int32 C, int32 H, int32 W, int32 kh, int32 kw, int32 OH, int32 OW, "
    "int32 sh, int32 sw, int32 ph, int32 pw",
    "T cols",
    """
    ptrdiff_t r = i;                                 // cols[c, ki, kj, n, oh, ow]
    const int ow = (int)(r % OW); r /= OW;
    const int oh = (int)(r % OH); r /= OH;
    const int n = (int)(r % N); r /= N;
    const int kj = (int)(r % kw); r /= kw;
    const int ki = (int)(r % kh); r /= kh;
    const int c = (int)r;
    const int y = oh * sh + ki - ph;
    const int xx = ow * sw + kj - pw;
    cols = (y >= 0 && y < H && xx >= 0 && xx < W)
        ? x[(((ptrdiff_t)n * C + c) * H + y) * W + xx] : (T)0;
    """)

# Padded row yh = h + ph received entry (ki, oh) of every ki = yh - oh*sh in [0, kh):
# ki runs over yh % sh, yh % sh + sh, ... up to min(kh - 1, yh), oh = (yh - ki) / sh
# (skipped past the last output row); likewise for columns.
_COL2IM = GpuKernel(
    "alexnet_col2im",
    "raw T cols, int32 N, int32 C, int32 H, int32 W, int32 kh, int32 kw, int32 OH, "
    "int32 OW, int32 sh, int32 sw, int32 ph, int32 pw, int32 batch_last",
    "T dx",
    """
    const int xw = (int)(i % W) + pw;
    const int yh = (int)((i / W) % H) + ph;
    const int c = (int)((i / ((ptrdiff_t)H * W)) % C);
    const int n = (int)(i / ((ptrdiff_t)C * H * W));
    T s = 0;
    for (int ki = yh % sh; ki < kh && ki <= yh; ki += sh) {
        const int oh = (yh - ki) / sh;
        if (oh >= OH) continue;
        for (int kj = xw % sw; kj < kw && kj <= xw; kj += sw) {
            const int ow = (xw - kj) / sw;
            if (ow >= OW) continue;
            const ptrdiff_t ck = ((ptrdiff_t)c * kh + ki) * kw + kj;
            s += cols[batch_last ? ((ck * OH + oh) * OW + ow) * N + n
                                 : ((ck * N + n) * OH + oh) * OW + ow];
        }
    }
    dx = s;
    """)


def im2col_kernel(x, cols6, stride, pad):
    """:func:`im2col_into` as one GPU kernel (CuPy only; see the note above)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, OH, OW = cols6.shape[1], cols6.shape[2], cols6.shape[4], cols6.shape[5]
    (sh, sw), (ph, pw) = stride, pad
    _IM2COL(xp, xp.ascontiguousarray(x), N, C, H, W, kh, kw, OH, OW, sh, sw, ph, pw, cols6)


def col2im_kernel(cols6, dx, stride, pad, batch_last=False):
    """:func:`col2im_into` as one GPU kernel (CuPy only; see the note above)."""
    xp = get_array_module(cols6)
    C, kh, kw = cols6.shape[:3]
    OH, OW = cols6.shape[3:5] if batch_last else cols6.shape[4:6]
    N, _, H, W = dx.shape
    (sh, sw), (ph, pw) = stride, pad
    _COL2IM(xp, xp.ascontiguousarray(cols6), N, C, H, W, kh, kw, OH, OW, sh, sw, ph, pw,
            int(batch_last), dx)
