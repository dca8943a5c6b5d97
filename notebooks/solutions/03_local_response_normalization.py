"""Reference solutions of notebook 03 (local response normalization)."""
import numpy as np


def _window_sum(a, size):
    """sum over j in [max(0, c - size//2), min(C-1, c + size//2)] of a[:, j], per channel c."""
    C, r = a.shape[1], size // 2
    return np.stack([a[:, max(0, c - r):min(C, c + r + 1)].sum(axis=1) for c in range(C)],
                    axis=1)


def my_lrn_forward(x, size, alpha, beta, k):
    """b = x / (k + alpha * window sum of x^2) ** beta."""
    scale = k + alpha * _window_sum(x ** 2, size)
    return x / scale ** beta


def my_lrn_backward(dout, x, size, alpha, beta, k):
    """dL/da_m = g_m s_m^-beta - 2 alpha beta a_m sum_{i: m in W(i)} g_i b_i / s_i.

    The window is symmetric, so the i whose window holds m are m's own window."""
    scale = k + alpha * _window_sum(x ** 2, size)
    out = x / scale ** beta
    return dout * scale ** -beta - 2 * alpha * beta * x * _window_sum(dout * out / scale, size)
