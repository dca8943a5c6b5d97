"""The fast route of ReLU on NumPy (layers/activations.py reads it top-down): the
array cut into pieces spread over the threads (engine/parallel.py), and the forward
compared, chunk by chunk, with an array of zeros rather than the scalar 0. The same
numbers as the readable route; CuPy takes the readable route (one call each way),
except that its 'loops' route runs the backward's pieces too, as one piece.
"""
from __future__ import annotations

import numpy as np

from engine.backend import few_calls, get_array_module
from engine.parallel import run_parallel


def relu_forward_applies(x) -> bool:
    """Whether relu_forward hands over to this module: a contiguous NumPy array."""
    return get_array_module(x) is np and (x.flags.c_contiguous or x.flags.f_contiguous)


def relu_backward_applies(dout, out) -> bool:
    """Whether relu_backward hands over to this module: dout and the forward's output
    in the same memory order, off CuPy's few-call route."""
    same_order = ((dout.flags.c_contiguous and out.flags.c_contiguous)
                  or (dout.flags.f_contiguous and out.flags.f_contiguous))
    return same_order and not few_calls(get_array_module(dout))


# Elements per np.maximum call in relu_forward (1 MiB of float32): big enough that the
# Python loop over chunks costs nothing (with small chunks the threads take turns at
# the GIL for every call), small enough to stay in the CPU's cache.
_CHUNK = 1 << 18
_ZEROS = {}


def _zeros(dtype):
    """A read-only (_CHUNK,) array of zeros of this dtype, made once."""
    if dtype not in _ZEROS:
        z = np.zeros(_CHUNK, dtype=dtype)
        z.flags.writeable = False
        _ZEROS[dtype] = z
    return _ZEROS[dtype]


def relu_forward(x, inplace):
    """relu_forward for a contiguous NumPy x: (out, out)."""
    out = x if inplace else np.empty_like(x)
    x_flat, out_flat = x.reshape(-1, order="A"), out.reshape(-1, order="A")   # views, same order
    # NumPy's maximum runs its fast (SIMD) loop only when both operands are arrays,
    # not against a scalar 0. So x is compared chunk by chunk with one array of
    # zeros, made once.
    zeros = _zeros(x.dtype)

    def piece(lo, hi):
        for s in range(lo, hi, _CHUNK):
            e = min(s + _CHUNK, hi)
            np.maximum(x_flat[s:e], zeros[:e - s], out=out_flat[s:e])
    # One core per piece of the flat array (engine/parallel.py).
    run_parallel(piece, x_flat.size, np, size=x_flat.size)
    return out, out


def relu_backward(dout, out, inplace):
    """relu_backward for dout and out in the same memory order: dx."""
    xp = get_array_module(dout)
    dx = dout if inplace else xp.empty_like(dout)
    dout_flat, out_flat = dout.reshape(-1, order="A"), out.reshape(-1, order="A")
    dx_flat = dx.reshape(-1, order="A")                # views, all in the same order

    def piece(lo, hi):
        xp.multiply(dout_flat[lo:hi], out_flat[lo:hi] > 0, out=dx_flat[lo:hi])
    run_parallel(piece, dout_flat.size, xp, size=dout_flat.size)
    return dx
