"""Dropout (Section 4.2): zero each hidden unit of fc6 and fc7 with probability p.

    training:  out = x * m / (1 - p)        test:  out = x               (inverted)
    training:  out = x * m                  test:  out = x * (1 - p)     (the paper's)

with m ~ Bernoulli(1 - p), one draw per unit. The mask's random bits come from a
counter-based hash (``counter_bits``, below the backward), the same on NumPy and CuPy;
with ALEXNET_GPU_ROUTES=kernels the mask and the product are one GPU kernel
(layers/fast/dropout.py).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from engine.backend import get_array_module
from layers._checks import check_dout, check_float_array
from layers.fast import dropout as fast

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
    if given, else from :func:`counter_bits` keyed by ``seed`` (same seed, same mask,
    on NumPy and CuPy alike), else from fresh entropy.

    Inputs:  x any shape; 0 <= p < 1.
    Returns: (out, cache); cache holds the scaled mask (None at test time).
    """
    op = "dropout_forward"
    check_float_array(x, "x", op)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: p must be in [0, 1), got {p!r}")
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {MODES}, got {mode!r}")
    xp = get_array_module(x)
    if not train:
        # the test-time cache keeps a stand-in of x's shape and dtype (one zero seen
        # through a broadcast view: no memory), so the backward can check dout as it
        # does after training
        like = xp.broadcast_to(xp.zeros((), dtype=x.dtype), x.shape)
        if mode == "paper":
            return x * x.dtype.type(1 - p), ("test", x.dtype.type(1 - p), like)
        return x, ("test", None, like)
    scale = 1.0 / (1.0 - p) if mode == "inverted" else 1.0
    seed = np.random.SeedSequence().entropy if seed is None else seed
    if rng is None and fast.applies(xp):      # ALEXNET_GPU_ROUTES=kernels: one kernel
        k0, k1, _ = _keys(seed, x.shape)
        return fast.dropout_forward(x, k0, k1, _threshold(p), scale)
    if rng is None:
        keep = keep_mask(x.shape, p, seed, xp)
    else:
        keep = rng.random(x.shape, dtype=x.dtype) >= p
    # The mask holds the scale too, so forward and backward are one multiply each.
    mask = keep.astype(x.dtype)
    if scale != 1.0:
        mask *= x.dtype.type(scale)
    return x * mask, ("train", mask)


def dropout_backward(dout, cache):
    """dx = dout * mask (training), or dout times the test-time scale."""
    if cache[0] == "test":
        _, scale, like = cache
        check_dout("dropout_backward", dout, like)
        return dout if scale is None else dout * scale
    _, mask = cache
    check_dout("dropout_backward", dout, mask)
    return dout * mask


# ----------------------------------------------------------- the mask's random bits

def keep_mask(shape, p, seed, xp):
    """Bernoulli(1 - p) as a bool array: counter_bits at or above p * 2**32."""
    return counter_bits(shape, seed, xp) >= _threshold(p)


def counter_bits(shape, seed, xp):
    """32 pseudo-random bits per element, as a uint32 array of ``shape`` on ``xp``.

    Counter-based, as the Philox generator PyTorch uses on GPUs: element i gets a hash
    of (seed, i) rather than the i-th step of a generator's state. Nothing is built
    per call but the array itself (a fresh CuPy Generator per batch would first set
    up a cuRAND state per GPU thread), and the bits are the same on NumPy and CuPy, so
    a run draws the same dropout masks on the CPU and on the GPU. ``seed`` is anything
    ``np.random.SeedSequence`` takes (an int, or a list such as [seed, step]); it is
    turned into two 32-bit keys on the host.
    """
    k0, k1, n = _keys(seed, shape)
    h = xp.arange(n, dtype=xp.uint32)
    h *= _GOLDEN
    h += k0
    _mix32(h)
    h ^= k1
    return _mix32(h).reshape(shape)


# Constants of the 32-bit mixing function below: the multipliers are odd (so each
# multiply is a bijection mod 2**32) and were found by a search for good avalanche
# (every input bit flips each output bit with probability close to 1/2): Chris
# Wellons's "lowbias32", from his hash-prospector search.
_MIX1, _MIX2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)
_GOLDEN = np.uint32(0x9E3779B9)          # 2**32 / golden ratio: spreads the counter


def _mix32(h):
    """A bijective scramble of uint32 values (xor-shift, multiply, twice), in place."""
    h ^= h >> np.uint32(16)
    h *= _MIX1
    h ^= h >> np.uint32(15)
    h *= _MIX2
    h ^= h >> np.uint32(16)
    return h


def _keys(seed, shape):
    """counter_bits' two 32-bit keys from the seed, and the number of elements."""
    k0, k1 = (np.uint32(k) for k in np.random.SeedSequence(seed).generate_state(2))
    n = math.prod(int(d) for d in shape)
    if n > 2 ** 32:
        raise ValueError(f"counter_bits: at most 2**32 elements, got shape {tuple(shape)}")
    return k0, k1, n


def _threshold(p):
    return np.uint32(min(int(round(p * 2.0 ** 32)), 2 ** 32 - 1))
