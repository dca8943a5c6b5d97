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

The forward and backward below are the plain array code; the CPU's threaded pieces
and the GPU kernels are in layers/fast/lrn.py.
"""
from __future__ import annotations

import math
import numbers

from engine.backend import get_array_module
from layers._checks import check_float_array, check_same_backend, check_same_dtype
from layers.fast import lrn as fast

_FWD = "lrn_forward"
_BWD = "lrn_backward"


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
    if fast.applies(xp):          # NumPy: threads over the batch; ALEXNET_GPU_ROUTES=kernels
        return fast.lrn_forward(x, size, alpha, beta, k)
    sq = x * x
    sq *= alpha                                     # alpha * x^2, every channel
    scale = sq + k                                  # each channel's own term, and k
    _add_channel_neighbours(scale, sq, size // 2)   # the other channels of its window
    denom = _pow_beta(scale, beta, xp)
    return x / denom, (x, scale, denom, size, alpha, beta)


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
    if fast.applies(xp):
        return fast.lrn_backward(dout, cache)
    dx = dout / denom                    # dout * scale^-beta: the direct term
    t = dx * x                           # dout * b
    t /= scale                           # dout * b / scale
    s = _add_channel_neighbours(t.copy(), t, size // 2)    # summed over each window
    s *= x
    s *= 2.0 * alpha * beta
    dx -= s
    return dx


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


def _pow_beta(scale, beta: float, xp):
    """scale ** beta, the denominator."""
    if beta == 0.75:
        # The paper's exponent: s^0.75 = sqrt(s) * sqrt(sqrt(s)). Two square roots and
        # a multiply are several times faster than the generic power on the CPU.
        denom = xp.sqrt(scale)
        denom *= xp.sqrt(denom)
        return denom
    return xp.power(scale, beta)


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
