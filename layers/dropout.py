"""Dropout (Section 4.2): zero each hidden unit of fc6 and fc7 with probability p."""
from __future__ import annotations

from engine.backend import get_array_module
from layers._checks import check_float_array

MODES = ("inverted", "paper")


def dropout_forward(x, p=0.5, train=True, mode="inverted", seed=None, rng=None):
    """Dropout with a reproducible mask.

    Two equivalent forms (equal in expectation):

    - ``mode="paper"`` (Section 4.2): at training time ``out = x * m`` with
      ``m ~ Bernoulli(1 - p)``; at test time every unit is kept and ``out = x * (1 - p)``
      (the paper's "multiply their outputs by 0.5").
    - ``mode="inverted"`` (the default): at training time ``out = x * m / (1 - p)``;
      at test time ``out = x``.

    Inverted is the default because the test-time network is then the plain
    network: evaluation, feature extraction (fc7 features for the paper's Figure 4)
    and exported weights need no knowledge of p. It is also what PyTorch and Caffe do.

    The mask is drawn from ``rng`` (a NumPy/CuPy Generator of the same backend as x)
    if given, else from a generator seeded with ``seed`` (same seed, same mask), else
    from fresh entropy.

    Inputs:  x any shape; 0 <= p < 1.
    Returns: (out, cache); cache holds the scaled mask (None at test time).
    """
    op = "dropout_forward"
    check_float_array(x, "x", op)
    if not (0.0 <= p < 1.0):
        raise ValueError(f"{op}: p must be in [0, 1), got {p!r}")
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {MODES}, got {mode!r}")
    xp = get_array_module(x)
    if not train:
        if mode == "paper":
            return x * x.dtype.type(1 - p), ("test", x.dtype.type(1 - p))
        return x, ("test", None)
    if rng is None:
        rng = xp.random.default_rng(seed)
    keep = rng.random(x.shape, dtype=x.dtype) >= p
    scale = 1.0 / (1.0 - p) if mode == "inverted" else 1.0
    # The mask holds the scale too, so forward and backward are one multiply each.
    mask = keep.astype(x.dtype)
    if scale != 1.0:
        mask *= x.dtype.type(scale)
    return x * mask, ("train", mask)


def dropout_backward(dout, cache):
    """dx = dout * mask (training), or dout times the test-time scale."""
    kind, mask = cache
    if mask is None:
        return dout
    if kind == "train" and dout.shape != mask.shape:
        raise ValueError(f"dropout_backward: dout has shape {tuple(dout.shape)}, "
                         f"expected {tuple(mask.shape)}")
    return dout * mask
