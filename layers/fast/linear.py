"""The fast route of the fully connected layer's forward (layers/linear.py reads it
top-down): ``x @ w.T`` with the operands in the order BLAS runs fastest, on the CPU's
threads (engine.parallel.matmul)."""
from __future__ import annotations

from engine.backend import get_array_module
from engine.parallel import matmul


def matmul_wide(a, b):
    """a @ b as a C-contiguous array, for a result with fewer rows than columns.

    Computed as (b.T @ a.T).T, the same numbers: for the fc layers' forward, (N, D_out)
    with a batch N smaller than D_out, OpenBLAS packs and blocks the two operands of
    the transposed product better. Transposing the result back is one copy of a small
    array. On the GPU it changes nothing.
    """
    xp = get_array_module(a)
    if a.shape[0] >= b.shape[1]:
        return matmul(a, b)
    return xp.ascontiguousarray(matmul(b.T, a.T).T)
