"""The fast route of dropout (layers/dropout.py reads it top-down): the mask and the
product as one GPU kernel, for CuPy with ALEXNET_GPU_ROUTES=kernels.

The kernel computes the same hash of the same counter as layers/dropout.py's
counter_bits, so it draws the same masks, bit for bit, where the array code makes
about 25 calls (each uint32 operation one kernel). Element i's counter is i mod 2**32,
as in counter_bits' uint32 arange. Every other route takes the readable code.
"""
from __future__ import annotations

from engine.backend import GpuKernel, get_array_module, gpu_kernels


def applies(xp) -> bool:
    """Whether dropout_forward (drawing its own mask) hands over to this module: on
    CuPy's 'kernels' route."""
    return gpu_kernels(xp)


def dropout_forward(x, k0, k1, threshold, scale):
    """The training forward: (out, ("train", mask)), mask = scale where the hash of
    (k0, k1, i) is at or above ``threshold``, else 0, as layers/dropout.py makes it."""
    xp = get_array_module(x)
    out, mask = xp.empty(x.shape, dtype=x.dtype), xp.empty(x.shape, dtype=x.dtype)
    # scale goes in as float64 and is rounded to x's type, as x.dtype.type(scale) is
    _MASK_KERNEL(xp, xp.ascontiguousarray(x), k0, k1, threshold, scale, out, mask)
    return out, ("train", mask)


_MASK_KERNEL = GpuKernel(
    "alexnet_dropout_forward",
    "T x, uint32 k0, uint32 k1, uint32 threshold, float64 scale",
    "T out, T mask",
    """
    unsigned int h = (unsigned int)i * 0x9E3779B9u + k0;
    h ^= h >> 16; h *= 0x7FEB352Du; h ^= h >> 15; h *= 0x846CA68Bu; h ^= h >> 16;
    h ^= k1;
    h ^= h >> 16; h *= 0x7FEB352Du; h ^= h >> 15; h *= 0x846CA68Bu; h ^= h >> 16;
    mask = h >= threshold ? (T)scale : (T)0;
    out = x * mask;
    """)
