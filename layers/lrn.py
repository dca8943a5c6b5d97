"""Local response normalization across channels (Section 3.3 of the paper).

For an activation a[c] at one pixel of one image (channel c of N_c channels),

    scale[c] = k + alpha * sum_{j = max(0, c - n//2)}^{min(N_c - 1, c + n//2)} a[j]^2
    b[c]     = a[c] / scale[c]^beta

with the paper's constants n = 5 (``size``), alpha = 1e-4, beta = 0.75, k = 2.
The window is clipped at the first and last channel, so border channels sum
fewer than n squares. ``alpha`` is used exactly as the paper writes it.

Other libraries' conventions (a classic source of silent mismatches):

- Caffe, PyTorch's ``nn.LocalResponseNorm`` and cuda-convnet divide alpha by n:
  ``scale = k + (alpha_theirs / n) * sum``, so ``alpha_paper = alpha_theirs / n``.
  ``torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)`` is the paper's layer.
  PyTorch computes the sum as an average pool over zero-padded channels with
  ``count_include_pad=True``, so it divides by n at the borders too, where fewer
  than n channels are summed; that is still alpha_theirs / n times our clipped
  sum, so the equivalence holds on every channel.
- TensorFlow's ``tf.nn.local_response_normalization`` takes ``depth_radius`` r
  (n = 2r + 1) and does not divide: its alpha is the paper's alpha.
- Caffe's default k is 1, not 2.
"""
from __future__ import annotations

import math
import numbers

from engine.backend import GpuKernel, get_array_module, gpu_kernels
from engine.parallel import run_parallel
from layers._checks import check_float_array, check_same_backend, check_same_dtype

_FWD = "lrn_forward"
_BWD = "lrn_backward"


def _check_params(op, size, alpha, beta, k):
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or size % 2 == 0:
        raise ValueError(f"{op}: size must be an odd positive integer (the window is centred on "
                         f"each channel), got {size!r}")
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{op}: {name} must be a real number, got {type(v).__name__} {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"{op}: {name} must be finite, got {v!r}")
    if not alpha >= 0:
        raise ValueError(f"{op}: alpha must be >= 0, got {alpha!r}")
    # k > 0 keeps scale > 0 even where a whole window is zero (common after ReLU).
    if not k > 0:
        raise ValueError(f"{op}: k must be > 0 so the denominator never vanishes, got {k!r}")
    # Python floats, not NumPy scalars: a np.float64 constant would upcast float32 arrays.
    return int(size), float(alpha), float(beta), float(k)


def _add_channel_neighbours(w, a, r: int):
    """In place: w[:, c] += a[:, j] for every j != c in [max(0, c - r), min(C - 1, c + r)].

    Starting from w = a (or a plus a constant) this gives the clipped channel-window
    sum. One strided add per offset (2r of them) instead of a loop over channels:
    n is small and each add touches whole (N, C - d, H, W) blocks.
    """
    C = a.shape[1]
    for d in range(1, min(r, C - 1) + 1):
        w[:, d:] += a[:, :-d]
        w[:, :-d] += a[:, d:]
    return w


def _pow_beta(scale, beta: float, xp, out, scratch):
    """out = scale ** beta, the denominator. ``scratch``: a free array of scale's shape."""
    if beta == 0.75:
        # The paper's exponent: s^0.75 = sqrt(s) * sqrt(sqrt(s)). Two square roots and
        # a multiply are several times faster than the generic power on CPU (13x).
        xp.sqrt(scale, out=out)
        out *= xp.sqrt(out, out=scratch)
        return out
    return xp.power(scale, beta, out=out)


# Elements per piece of the batch (about 1 MB of float32): each piece goes through
# ten passes, and from the second on they find it in the CPU's cache.
_PIECE = 1 << 18


def lrn_forward(x, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    """Local response normalization across channels, the paper's convention.

    b[n, c, h, w] = x[n, c, h, w] / scale[n, c, h, w] ** beta, where
    scale[n, c, h, w] = k + alpha * sum_{j=max(0, c-size//2)}^{min(C-1, c+size//2)} x[n, j, h, w]^2.

    Inputs:
    - x: (N, C, H, W) float32 or float64.
    - size: n, the (odd) number of channels in the window.
    - alpha, beta, k: the constants as the paper writes them (alpha not divided
      by n; see the module docstring for other libraries' conventions).

    Returns (out, cache):
    - out: (N, C, H, W), same dtype as x.
    - cache: (x, scale, denom, size, alpha, beta) with scale and denom = scale**beta
      both (N, C, H, W).
    """
    check_float_array(x, "x", _FWD, ndim=4)
    size, alpha, beta, k = _check_params(_FWD, size, alpha, beta, k)
    xp = get_array_module(x)
    if gpu_kernels(xp):             # CuPy with ALEXNET_GPU_ROUTES=kernels: one kernel
        x = xp.ascontiguousarray(x)
    scale, denom, out = xp.empty_like(x), xp.empty_like(x), xp.empty_like(x)
    if gpu_kernels(xp):
        C, H, W = x.shape[1:]
        _FWD_KERNEL(xp, x, C, H * W, size // 2, alpha, beta, k, scale, denom, out)
        return out, (x, scale, denom, size, alpha, beta)

    def images(lo, hi):
        xs, sc, dn = x[lo:hi], scale[lo:hi], denom[lo:hi]
        sq = xs * xs
        sq *= alpha
        xp.add(sq, k, out=sc)           # the centre channel and k in one pass
        _add_channel_neighbours(sc, sq, size // 2)
        _pow_beta(sc, beta, xp, out=dn, scratch=sq)   # sq is no longer needed
        xp.divide(xs, dn, out=out[lo:hi])
    # A few images at a time, over the threads (engine/parallel.py); the window runs
    # over channels, so every piece holds whole images. One piece on CuPy.
    run_parallel(images, x.shape[0], xp, size=x.size, piece_size=_PIECE)
    return out, (x, scale, denom, size, alpha, beta)


def lrn_backward(dout, cache):
    """Gradient of lrn_forward with respect to x.

    With L the loss and g = dL/db (``dout``), b[i] depends on a[m] through a[i]
    (when m == i) and through scale[i] (when m is in i's window):

        d b[i] / d a[m] = [i == m] * scale[i]^-beta
                          - 2 * alpha * beta * a[i] * a[m] * scale[i]^(-beta-1) * [m in window(i)]

    Summing g[i] * d b[i] / d a[m] over i, and using a[i] * scale[i]^(-beta-1)
    = b[i] / scale[i]:

        dx[m] = g[m] * scale[m]^-beta
                - 2 * alpha * beta * a[m] * sum_{i : m in window(i)} g[i] * b[i] / scale[i]

    The window is symmetric (|i - m| <= n//2, clipped at the borders), so
    "i such that m is in window(i)" is window(m) itself, and the inner sum is the
    same channel-window sum as in the forward pass, applied to g * b / scale.

    Inputs:
    - dout: (N, C, H, W), upstream gradient, same dtype as x.
    - cache: from lrn_forward.

    Returns dx: (N, C, H, W).
    """
    x, scale, denom, size, alpha, beta = cache
    check_float_array(dout, "dout", _BWD, ndim=4)
    if dout.shape != x.shape:
        raise ValueError(f"{_BWD}: dout must have the shape of the forward output "
                         f"{tuple(x.shape)}, got {tuple(dout.shape)}")
    check_same_dtype(_BWD, dout=dout, x=x)
    check_same_backend(_BWD, dout=dout, x=x)
    xp = get_array_module(dout)
    if gpu_kernels(xp):
        dx = xp.empty(dout.shape, dtype=dout.dtype)
        C, H, W = x.shape[1:]
        _BWD_KERNEL(xp, x, xp.ascontiguousarray(dout), scale, denom, C, H * W, size // 2,
                    2.0 * alpha * beta, dx)
        return dx
    dx = xp.empty_like(dout)

    def images(lo, hi):
        xs, d = x[lo:hi], dx[lo:hi]
        xp.divide(dout[lo:hi], denom[lo:hi], out=d)   # dout * scale^-beta: the direct term
        t = d * xs                                      # dout * b
        t /= scale[lo:hi]                               # dout * b / scale
        s = _add_channel_neighbours(t.copy(), t, size // 2)
        s *= xs
        s *= 2.0 * alpha * beta
        d -= s
    run_parallel(images, x.shape[0], xp, size=x.size, piece_size=_PIECE)
    return dx


# The same two passes as GPU kernels (engine/backend.py: GpuKernel), for CuPy with
# ALEXNET_GPU_ROUTES=kernels. The code above makes about ten whole-array passes each
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


def lrn_forward_naive(x, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    """Reference LRN: an explicit loop over channels with the paper's window bounds.

    Slow and plain on purpose, for tests and notebooks. Same formula, inputs and
    dtype as lrn_forward; returns only the output (N, C, H, W).
    """
    check_float_array(x, "x", "lrn_forward_naive", ndim=4)
    size, alpha, beta, k = _check_params("lrn_forward_naive", size, alpha, beta, k)
    xp = get_array_module(x)
    C = x.shape[1]
    half = size // 2
    out = xp.empty_like(x)
    for i in range(C):
        lo = max(0, i - half)
        hi = min(C - 1, i + half)
        s = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        out[:, i] = x[:, i] / (k + alpha * s) ** beta
    return out
