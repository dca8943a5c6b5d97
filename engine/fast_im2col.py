"""The fast routes of im2col and col2im (engine/im2col.py reads them top-down).

``im2col_into`` and ``col2im_into`` in engine/im2col.py hand over to this module
where ``applies`` says so; every route here computes the numbers of the readable
loop there, the same to the last bit (im2col only copies; col2im adds each pixel's
terms in the same kernel-offset order, or sums them as a fixed reduction):

- the CPU's loops (``im2col_loops``, ``col2im_loops``): the readable loop over the
  kernel offsets, after splitting the padded input (or the gradient) into its
  stride phases, so that every offset reads or adds dense rows; and, for col2im,
  columns ordered (oh, ow, n), images last (``batch_last``);
- CuPy's few calls (``im2col_strided``, ``col2im_strided``): every window at once,
  through one strided view, in about ten array calls instead of three or four per
  kernel offset;
- CuPy's kernels (``im2col_kernel``, ``col2im_kernel``, with
  ALEXNET_GPU_ROUTES=kernels): one hand-written CUDA kernel each way.

The column array ``cols`` is (C, KH, KW, N, OH, OW) throughout (or (C, KH, KW, OH,
OW, N) with ``batch_last``), the memory of the (C*KH*KW, N*OH*OW) matrix.
"""
from __future__ import annotations

from engine.backend import GpuKernel, few_calls, get_array_module, gpu_kernels


def applies(xp, stride, batch_last=False) -> bool:
    """Whether im2col_into / col2im_into hand over to this module: on CuPy's few-call
    and kernel routes; elsewhere (NumPy, and CuPy's 'loops' route) where the stride is
    above 1 (the stride phases) or the columns come images last."""
    return few_calls(xp) or tuple(stride) != (1, 1) or batch_last


def im2col_into(x, cols, stride, pad):
    """engine.im2col.im2col_into by the backend's fast route."""
    xp = get_array_module(x)
    if gpu_kernels(xp):
        im2col_kernel(x, cols, stride, pad)
    elif few_calls(xp):
        im2col_strided(x, cols, stride, pad)
    else:
        im2col_loops(x, cols, stride, pad)


def col2im_into(cols, dx, stride, pad, batch_last=False):
    """engine.im2col.col2im_into by the backend's fast route."""
    xp = get_array_module(cols)
    if gpu_kernels(xp):
        col2im_kernel(cols, dx, stride, pad, batch_last)
    elif few_calls(xp):
        col2im_strided(cols, dx, stride, pad, batch_last)
    else:
        col2im_loops(cols, dx, stride, pad, batch_last)


# ------------------------------------------------------------- the CPU: stride phases

def im2col_loops(x, cols, stride, pad):
    """im2col_into by one strided slice copy per kernel offset, from the stride phases
    of the padded input. cols: (C, KH, KW, N, OH, OW)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, OH, OW = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    (sh, sw), (ph, pw) = stride, pad
    # The plain loop reads xpad[:, :, i::sh, j::sw] for every offset (i, j). With
    # stride 4 (conv1) those are reads 4 values apart, one per cache line, 121 times
    # over. Instead xpad is split once into its sh x sw stride phases, as col2im_loops
    # does: padded row y = q*sh + a is row q of phase a, and offset i reads phase
    # i % sh from row i // sh on. Every offset then copies dense rows. With stride 1
    # there is one phase: xpad.
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
            cols[:, i, j] = phases[a, b, :, :, q:q + OH, r:r + OW]


def col2im_loops(cols, dx, stride, pad, batch_last=False):
    """col2im_into by one strided slice add per kernel offset, into the stride phases
    of the padded gradient. cols: (C, KH, KW, N, OH, OW), or (C, KH, KW, OH, OW, N)
    with batch_last."""
    xp = get_array_module(cols)
    if batch_last:
        C, kh, kw, OH, OW, N = cols.shape
    else:
        C, kh, kw, N, OH, OW = cols.shape
    H, W = dx.shape[2], dx.shape[3]
    (sh, sw), (ph, pw) = stride, pad
    # Why the phase split: with stride s, ``dxpad[..., i::s, j::s] += ...`` is a
    # read-modify-write with a stride-s inner loop, one value per cache line. Padded
    # row y = q*sh + a belongs to phase a = y % sh at position q = y // sh, and
    # offset i only touches phase i % sh, at rows i // sh + oh. So each phase is
    # accumulated in its own dense array, where every offset adds one contiguous-row
    # slice, and the phases are interleaved once at the end. With stride 1 there is a
    # single phase and this is the plain loop.
    #
    # Why batch_last: each '+=' then runs over rows of OW*N contiguous values rather
    # than OW. On small maps (the 13x13 and 7x7 of conv3-conv5) rows of OW values
    # leave NumPy starting one short loop after another.
    HQ = max((kh - 1) // sh + OH, -(-(H + 2 * ph) // sh))   # rows per phase, ceil
    WQ = max((kw - 1) // sw + OW, -(-(W + 2 * pw) // sw))
    if batch_last:
        acc = xp.zeros((sh, sw, C, HQ, WQ, N), dtype=cols.dtype)
    else:
        acc = xp.zeros((sh, sw, C, N, HQ, WQ), dtype=cols.dtype)
    for i in range(kh):
        a, q = i % sh, i // sh
        for j in range(kw):
            b, r = j % sw, j // sw
            if batch_last:
                acc[a, b, :, q:q + OH, r:r + OW] += cols[:, i, j]
            else:
                acc[a, b, :, :, q:q + OH, r:r + OW] += cols[:, i, j]
    # acc[a, b, c, n, q, r] (or [a, b, c, q, r, n]) is dxpad[n, c, q*sh + a, r*sw + b]:
    # interleave the phases and restore (N, C) order in one copy.
    order = (5, 2, 3, 0, 4, 1) if batch_last else (3, 2, 4, 0, 5, 1)
    dxpad = acc.transpose(order).reshape(N, C, HQ * sh, WQ * sw)
    dx[...] = dxpad[:, :, ph:ph + H, pw:pw + W]


# ---------------------------------------------------------- CuPy: a few whole-array calls
#
# On a GPU each call (a kernel launch, or only a view) costs the host a fixed time of
# Python and CuPy whatever its size, and the small `mini` net gives each kernel little
# work: a training step waits on the host. The loops make 3-4 calls per kernel offset
# (75-100 for a 5x5 kernel, each way); these make about ten, by reading all the windows
# at once through one strided view (bench/calls.py counts the calls per layer). On
# NumPy the loops stay: there a call costs little, and a copy through a 6-D strided
# view runs with inner loops as short as a kernel row, slower than whole-row slices.

def _window_strides(s, sh, sw):
    """Strides of the view v[c, i, j, n, oh, ow] = a[c, n, oh*sh + i, ow*sw + j] of an
    array a (C, N, H, W) with strides s."""
    return (s[0], s[2], s[3], s[1], s[2] * sh, s[3] * sw)


def im2col_strided(x, cols, stride, pad):
    """im2col_into as one copy through a strided view of every window.

    cols[c, i, j, n, oh, ow] = xpad[n, c, oh*sh + i, ow*sw + j]: pad x (channels
    first, the order of cols), view it as (C, KH, KW, N, OH, OW) with
    ``as_strided`` (a window's rows and columns are steps of the input's rows and
    columns; the next window is sh rows or sw columns further), copy that view.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, OH, OW = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    (sh, sw), (ph, pw) = stride, pad
    xpad = xp.zeros((C, N, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph:ph + H, pw:pw + W] = x.transpose(1, 0, 2, 3)
    cols[...] = xp.lib.stride_tricks.as_strided(
        xpad, shape=(C, kh, kw, N, OH, OW), strides=_window_strides(xpad.strides, sh, sw))


def col2im_strided(cols, dx, stride, pad, batch_last=False):
    """col2im_into as one sum over a strided view: a gather, no scatter.

    dxpad[n, c, y, x] = sum over (i, j) of cols[c, i, j, n, oh, ow] where
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
    stride 1 on 27x27 maps, and more with strides (4.5 to 5.3 times for 3x3/2
    pooling). Where GPU memory is short, ALEXNET_GPU_ROUTES=loops (engine/backend.py)
    takes the loops.
    """
    xp = get_array_module(cols)
    if batch_last:                                   # (C, KH, KW, OH, OW, N): a view
        cols = cols.transpose(0, 1, 2, 5, 3, 4)
    C, kh, kw, N, OH, OW = cols.shape
    H, W = dx.shape[2], dx.shape[3]
    (sh, sw), (ph, pw) = stride, pad
    Hp, Wp = H + 2 * ph, W + 2 * pw
    D = xp.zeros((C, kh, kw, N, Hp + kh - 1, Wp + kw - 1), dtype=cols.dtype)
    D[:, :, :, :, kh - 1:kh - 1 + (OH - 1) * sh + 1:sh,
      kw - 1:kw - 1 + (OW - 1) * sw + 1:sw] = cols
    s = D.strides
    terms = xp.lib.stride_tricks.as_strided(
        D[:, :, :, :, kh - 1:, kw - 1:], shape=(C, kh, kw, N, Hp, Wp),
        strides=(s[0], s[1] - s[4], s[2] - s[5], s[3], s[4], s[5]))
    dxpad = terms.sum(axis=(1, 2))                   # (C, N, Hp, Wp)
    dx[...] = dxpad[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)


# ------------------------------------------------------------------ CuPy: CUDA kernels
#
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


def im2col_kernel(x, cols, stride, pad):
    """im2col_into as one GPU kernel (CuPy only). cols: (C, KH, KW, N, OH, OW)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, OH, OW = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    (sh, sw), (ph, pw) = stride, pad
    _IM2COL(xp, xp.ascontiguousarray(x), N, C, H, W, kh, kw, OH, OW, sh, sw, ph, pw, cols)


def col2im_kernel(cols, dx, stride, pad, batch_last=False):
    """col2im_into as one GPU kernel (CuPy only). cols: (C, KH, KW, N, OH, OW), or
    (C, KH, KW, OH, OW, N) with batch_last."""
    xp = get_array_module(cols)
    C, kh, kw = cols.shape[:3]
    OH, OW = cols.shape[3:5] if batch_last else cols.shape[4:6]
    N, _, H, W = dx.shape
    (sh, sw), (ph, pw) = stride, pad
    _COL2IM(xp, xp.ascontiguousarray(cols), N, C, H, W, kh, kw, OH, OW, sh, sw, ph, pw,
            int(batch_last), dx)
