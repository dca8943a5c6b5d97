"""Activations: ReLU (the paper's nonlinearity, Section 3.1) and tanh (what it replaced).

The paper's Figure 1: a four-layer CNN with ReLUs reached 25% training error on
CIFAR-10 six times faster than the same net with tanh. ReLU does not saturate: its
gradient is exactly 1 for every positive input, while tanh's gradient 1 - tanh(x)^2
vanishes for large |x|.
"""
from __future__ import annotations

from engine.backend import get_array_module
from layers._checks import check_float_array


def relu_forward(x):
    """ReLU, ``out = max(0, x)``, elementwise.

    Inputs:  x, any shape, float32 or float64.
    Returns: (out, cache) with out the same shape and dtype as x; cache = out.
    """
    check_float_array(x, "x", "relu_forward")
    xp = get_array_module(x)
    out = xp.maximum(x, 0)
    # Keeping the output rather than the input is enough for the backward
    # (out > 0 exactly where x > 0), and lets the caller drop x.
    return out, out


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0. (At x == 0 we take the subgradient 0.)

    Inputs:  dout, same shape as the forward output; cache from relu_forward.
    Returns: dx, same shape as dout.
    """
    out = cache
    if dout.shape != out.shape:
        raise ValueError(f"relu_backward: dout has shape {tuple(dout.shape)}, "
                         f"expected {tuple(out.shape)}")
    # Multiplying by the boolean mask is much faster than xp.where or masked
    # assignment when the mask is unpredictable (branch-free, vectorized).
    return dout * (out > 0)


def tanh_forward(x):
    """tanh, elementwise. Returns (out, cache) with cache = out."""
    check_float_array(x, "x", "tanh_forward")
    xp = get_array_module(x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """d tanh(x)/dx = 1 - tanh(x)^2, written in terms of the saved output."""
    out = cache
    if dout.shape != out.shape:
        raise ValueError(f"tanh_backward: dout has shape {tuple(dout.shape)}, "
                         f"expected {tuple(out.shape)}")
    return dout * (1 - out * out)
