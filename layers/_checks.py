"""Input validation shared by the ops.

Bad input should fail loudly, at the op that received it, with a message that
names the op, what it expected and what it got, instead of a broadcasting error
three layers later.
"""
from __future__ import annotations

import numbers

from engine.backend import get_array_module


def check_float_array(x, name: str, op: str, ndim: int | None = None):
    """Raise TypeError unless ``x`` is a NumPy/CuPy floating array with ``ndim`` dims."""
    xp = get_array_module(x)
    if not isinstance(x, xp.ndarray):
        raise TypeError(f"{op}: {name} must be a NumPy or CuPy array, got {type(x).__name__}")
    if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):
        raise TypeError(
            f"{op}: {name} must be a float32 or float64 array, got dtype {x.dtype}"
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(
            f"{op}: {name} must have {ndim} dimensions, got {x.ndim} (shape {tuple(x.shape)})"
        )


def check_same_dtype(op: str, **arrays):
    """Raise TypeError when arrays mix dtypes (which would silently upcast float32)."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    dtypes = {v.dtype for _, v in items}
    if len(dtypes) > 1:
        desc = ", ".join(f"{k} is {v.dtype}" for k, v in items)
        raise TypeError(f"{op}: all arrays must share one dtype, but {desc}; cast them first")


def check_same_backend(op: str, **arrays):
    """Raise TypeError when NumPy and CuPy arrays are mixed in one call."""
    mods = {get_array_module(v).__name__ for v in arrays.values() if v is not None}
    if len(mods) > 1:
        desc = ", ".join(f"{k} is {get_array_module(v).__name__}"
                         for k, v in arrays.items() if v is not None)
        raise TypeError(f"{op}: arrays must all be on the CPU (numpy) or all on the GPU (cupy), "
                        f"but {desc}")


def check_dout(op: str, dout, like, shape=None):
    """Check an upstream gradient against an array of the forward (its output, or a
    weight): same backend, same dtype, and ``shape`` (default: like's shape). A float64
    dout after a float32 forward would otherwise upcast every gradient below it."""
    check_float_array(dout, "dout", op)
    check_same_backend(op, dout=dout, forward=like)
    if dout.dtype != like.dtype:
        raise TypeError(f"{op}: dout must have the forward's dtype {like.dtype}, "
                        f"got {dout.dtype}; cast it first")
    shape = tuple(like.shape) if shape is None else tuple(shape)
    if tuple(dout.shape) != shape:
        raise ValueError(f"{op}: dout has shape {tuple(dout.shape)}, expected {shape}")


def is_int(value) -> bool:
    """A Python or NumPy integer (np.int64(3) counts), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value, name: str, op: str, minimum: int = 1):
    if not is_int(value) or value < minimum:
        raise ValueError(f"{op}: {name} must be an integer >= {minimum}, got {value!r}")


def pair(value, name: str, op: str, minimum: int = 1) -> tuple[int, int]:
    """Turn an int or an (h, w) pair into an (h, w) tuple of ints, validated."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}: {name} must be an int or a pair (h, w), got {value!r}")
        h, w = value
    else:
        h = w = value
    check_positive_int(h, name, op, minimum)
    check_positive_int(w, name, op, minimum)
    return int(h), int(w)
