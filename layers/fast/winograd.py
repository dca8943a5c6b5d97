"""Winograd's minimal filtering for the stride-1 convolutions (Lavin & Gray, 2016).

The 1-D idea, F(m, r): m outputs of an r-tap correlation, y[i] = sum_j g[j] d[i + j],
from a tile of a = m + r - 1 inputs, in a multiplies instead of m * r:

    y = A^T [ (G g) * (B^T d) ]            (* elementwise)

Nested in 2-D, F(m x m, r x r) gives an m x m block of outputs from an a x a input
tile:

    Y = A^T [ (G g G^T) * (B^T d B) ] A

The matrices come from Toom-Cook polynomial evaluation at a - 1 points plus infinity
(``transforms``). In a convolution layer the elementwise product, summed over the
input channels, is one matrix product per tile position (xi, nu) of the a x a
transformed tile:

    M[xi, nu] (F, tiles) = U[xi, nu] (F, C) @ V[xi, nu] (C, tiles)

with U = G w G^T per filter and channel, and V = B^T d B per channel and tile. For
3x3 kernels and F(2x2, 3x3), that is 16 multiplies per 4 outputs where im2col does
36, 2.25 times fewer. Larger tiles save more, F(4x4, 3x3) 36 for 16 (4 times fewer),
but waste more at the map's edge and round more; ``tile_size`` picks per layer: on
the ``mini`` preset's 6x6 maps, F(3x3, 3x3) does 3.2 times fewer multiplies than
im2col; on the 7x7 maps of 32-pixel input and the paper's 13x13, F(4x4, 3x3) 3.1
and 2.6 times fewer.

The backward is the transpose of the same linear maps, nothing new to derive: with
Z = A dY A^T per tile (the output transform, transposed),

    dU[xi, nu] = Z[xi, nu] @ V[xi, nu]^T       dw = G^T dU G
    dV[xi, nu] = U[xi, nu]^T @ Z[xi, nu]       dd = B dV B^T, added back onto the
                                               overlapping input tiles (a col2im)

so the two backward products get the same saving. The tiles of the input are the
windows of an im2col with an a x a kernel and stride m, and the adding back is its
col2im.

This is a fast route (layers/fast/conv.py hands over to it on NumPy for the kernel
sizes in ``KERNELS``); the readable im2col route in layers/conv.py is its reference.
The numbers are not bit-identical to it (other sums of other products), but agree
to float rounding: tests/test_winograd.py holds the two together and checks
this route's gradients in float64. docs/PERFORMANCE.md has its timings.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from engine.parallel import matmul, run_parallel

# The kernel sizes this route takes (the readable im2col route takes the others).
# The code works for any r with points for its tiles (the tests run 5x5 too), but
# F(2x2, 5x5) made the mini net's conv2 slower in the benchmark, and conv1 (one input
# channel) six times slower: docs/PERFORMANCE.md. ALEXNET_WINOGRAD=0 in the
# environment turns the route off, to compare the two.
KERNELS = (3,) if os.environ.get("ALEXNET_WINOGRAD", "1") != "0" else ()

# The output tiles m tried for F(m x m, r x r). Larger tiles save more multiplies but
# round more (larger transform entries) and waste more where the map is not a
# multiple of m; ``tile_size`` picks per layer.
TILE_SIZES = (2, 3, 4)

# Toom-Cook points per tile size a = m + r - 1 (a - 1 finite points, and infinity):
# small integers keep the transforms' entries small, and so the rounding errors.
POINTS = {4: (0, 1, -1), 5: (0, 1, -1, 2), 6: (0, 1, -1, 2, -2)}


def tile_size(r: int, OH: int, OW: int) -> int:
    """The m in TILE_SIZES with the fewest multiplies per channel pair: a*a per tile
    times the tiles that cover the OH x OW output (the smaller m on a tie). For 3x3
    kernels: m = 3 on 6x6 maps (4 tiles: 100 multiplies where im2col does 324),
    m = 4 on 7x7 (144 against 441) and on 13x13 (576 against 1521)."""
    sizes = [m for m in TILE_SIZES if m + r - 1 in POINTS] or [min(TILE_SIZES)]
    return min(sizes, key=lambda m: ((m + r - 1) ** 2 * -(-OH // m) * -(-OW // m), m))


@functools.lru_cache(maxsize=None)
def transforms(m: int, r: int):
    """(A^T, G, B^T) of F(m, r) in float64: (m, a), (a, r), (a, a), a = m + r - 1.

    Polynomial multiplication by evaluation: with V_k the Vandermonde matrix of the
    points for polynomials of k coefficients (the row for infinity picks the top
    coefficient), the product of g (r coefficients) and h (m) is
    V_a^-1 [(V_r g) * (V_m h)]. A correlation is the transpose of that product as a
    map of h, which gives A^T = V_m^T, G = V_r, B^T = V_a^-T. Each row k of B^T is
    then scaled by prod_{l != k} (p_k - p_l), and row k of G divided by it, which
    leaves the product unchanged and B^T's entries small integers.
    """
    a = m + r - 1
    p = np.array(POINTS[a], dtype=np.float64)

    def vandermonde(k):
        V = np.zeros((a, k))
        V[:-1] = p[:, None] ** np.arange(k)
        V[-1, -1] = 1.0                              # the point at infinity
        return V

    scale = np.ones(a)
    for k in range(a - 1):
        scale[k] = np.prod([p[k] - p[l] for l in range(a - 1) if l != k])
    AT = vandermonde(m).T
    G = vandermonde(r) / scale[:, None]
    # Row k of the scaled B^T holds the coefficients of prod_{l != k} (x - p_l) (and
    # the row for infinity those of the whole product): integers for integer points.
    # Rounding removes the inverse's rounding errors.
    BT = np.round(np.linalg.inv(vandermonde(a)).T * scale[:, None])
    return AT, G, BT


def applies(x_shape, w_shape, stride) -> bool:
    """Whether conv2d_forward hands over here: stride 1, a square kernel in KERNELS.
    (The caller has already chosen NumPy.)"""
    KH, KW = w_shape[2], w_shape[3]
    return tuple(stride) == (1, 1) and KH == KW and KH in KERNELS


class Saved:
    """What the forward keeps for the backward in place of im2col's columns: the
    transformed filters U and, per piece of the batch, its transformed tiles V."""

    def __init__(self, m, U):
        self.m, self.U, self.V = m, U, {}


def _matrices(m, r, dtype):
    """The 2-D transforms as matrices acting on flattened tiles, in ``dtype``:
    X -> P X Q^T, X flattened row by row, is the matrix kron(P, Q). So A^T Y A is
    kron(A^T, A^T) (m*m, a*a), G g G^T is kron(G, G) (a*a, r*r) and B^T d B is
    kron(B^T, B^T) (a*a, a*a): each transform is one matrix product."""
    AT, G, BT = transforms(m, r)
    return tuple(np.kron(M, M).astype(dtype) for M in (AT, G, BT))


def _geometry(x_shape, r, m, pad, out_size):
    """(tile rows, tile cols, padded height, padded width): enough tiles to cover
    the output; the padded input reaches to the last tile's bottom-right corner."""
    OH, OW = out_size
    th, tw = -(-OH // m), -(-OW // m)
    a = m + r - 1
    return th, tw, (th - 1) * m + a, (tw - 1) * m + a


def _input_tiles(x, r, m, pad, out_size, BT):
    """V = B^T d B of every a x a input tile: (C, a*a, tiles*n), tiles in (th, tw, n)
    order, the images last."""
    n, C, H, W = x.shape
    a = m + r - 1
    ph, pw = pad
    th, tw, Hp, Wp = _geometry(x.shape, r, m, pad, out_size)
    # The padded input with the images last, (C, Hp, Wp, n): the maps are small (a
    # 6x6 map has 3x3 tiles of 2x2), and with the images last every copy below runs
    # over n contiguous values rather than over a row of 3 tiles.
    xpad = np.zeros((C, Hp, Wp, n), dtype=x.dtype)
    xpad[:, ph:ph + H, pw:pw + W] = x.transpose(1, 2, 3, 0)
    # The tiles: an im2col with an a x a kernel at stride m, (C, a, a, th, tw, n).
    d = np.empty((C, a, a, th, tw, n), dtype=x.dtype)
    for i in range(a):
        for j in range(a):
            d[:, i, j] = xpad[:, i:i + (th - 1) * m + 1:m, j:j + (tw - 1) * m + 1:m]
    # B^T d B of every tile: kron(B^T, B^T) @ d, per channel
    return np.matmul(BT, d.reshape(C, a * a, -1))               # (C, xi*nu, tiles*n)


def conv2d_forward(x, w, b, pad, groups, out_size):
    """conv2d_forward for checked arguments (stride 1): (out, cache), the cache in
    layers/conv.py's layout with a ``Saved`` where the columns would be."""
    N, C, H, W = x.shape
    F, Cg, r, _ = w.shape
    m = tile_size(r, *out_size)
    a, Fg = m + r - 1, F // groups
    OH, OW = out_size
    th, tw, _, _ = _geometry(x.shape, r, m, pad, out_size)
    AT, G, BT = _matrices(m, r, x.dtype)
    # U = G w G^T for every (filter, channel): (a*a, F, Cg)
    # (engine.parallel.matmul: spread over the threads with one-thread BLAS. Left to
    # itself, OpenBLAS's own threads would keep spinning after the product and
    # compete with the threads that run the rest.)
    U = matmul(G, w.reshape(F * Cg, r * r).T).reshape(a * a, F, Cg)
    saved = Saved(m, U)
    out = np.empty((N, F, OH, OW), dtype=x.dtype)

    def images(lo, hi):
        n = hi - lo
        V = saved.V[lo, hi] = _input_tiles(x[lo:hi], r, m, pad, out_size, BT)
        Mt = np.empty((a * a, F, V.shape[2]), dtype=x.dtype)
        for g in range(groups):
            f, c = slice(g * Fg, (g + 1) * Fg), slice(g * Cg, (g + 1) * Cg)
            # One product per tile position: V[c].transpose(1, 0, 2) is a view whose
            # (Cg, n*tiles) matrices BLAS reads as they are.
            np.matmul(U[:, f], V[c].transpose(1, 0, 2), out=Mt[:, f])
        # Y = A^T M A of every tile, (p, q, F, th, tw, n), where
        # output (th*m + p, tw*m + q) is row p, column q of tile (th, tw).
        Y = AT @ Mt.reshape(a * a, -1)
        Y = Y.reshape(m, m, F, th, tw, n).transpose(5, 2, 3, 0, 4, 1)
        Y = Y.reshape(n, F, th * m, tw * m)[:, :, :OH, :OW]
        if b is None:
            out[lo:hi] = Y
        else:
            np.add(Y, b[:, None, None], out=out[lo:hi])

    run_parallel(images, N, np)
    cache = (saved, x, None, None, tuple(x.shape), w, b is not None, (1, 1), tuple(pad),
             groups, (OH, OW))
    return out, cache


def conv2d_backward(dout, cache, need_dx):
    """conv2d_backward for a checked dout and a cache from this module's forward:
    (dx, dw, db), each the transpose of a forward step (see the module docstring)."""
    saved, x, _, _, x_shape, w, has_b, _, pad, groups, (OH, OW) = cache
    N, C, H, W = x_shape
    F, Cg, r, _ = w.shape
    m, U = saved.m, saved.U
    a, Fg = m + r - 1, F // groups
    ph, pw = pad
    th, tw, Hp, Wp = _geometry(x_shape, r, m, pad, (OH, OW))
    AT, G, BT = _matrices(m, r, dout.dtype)
    dx = np.empty(x_shape, dtype=dout.dtype) if need_dx else None

    def images(lo, hi):
        """dU of images lo..hi-1 (a partial sum), and their dx."""
        n = hi - lo
        V = saved.V.get((lo, hi))
        if V is None:                    # the batch was split otherwise in the forward
            V = _input_tiles(x[lo:hi], r, m, pad, (OH, OW), BT)
        # dY in the output tiles' layout (p, q, F, th, tw, n), zero past the output's
        # edge (where the last tiles reach beyond it)
        d_out = dout[lo:hi]
        if (OH, OW) != (th * m, tw * m):
            d_out = np.zeros((n, F, th * m, tw * m), dtype=dout.dtype)
            d_out[:, :, :OH, :OW] = dout[lo:hi]
        dY = np.empty((m, m, F, th, tw, n), dtype=dout.dtype)
        dY.transpose(5, 2, 3, 0, 4, 1)[...] = d_out.reshape(n, F, th, m, tw, m)
        # Z = A dY A^T: the output transform transposed, (xi*nu, F, tiles*n)
        Z = (AT.T @ dY.reshape(m * m, -1)).reshape(a * a, F, -1)
        dU = np.empty((a * a, F, Cg), dtype=dout.dtype)
        dV = np.empty((C, a * a, V.shape[2]), dtype=dout.dtype) if need_dx else None
        for g in range(groups):
            f, c = slice(g * Fg, (g + 1) * Fg), slice(g * Cg, (g + 1) * Cg)
            np.matmul(Z[:, f], V[c].transpose(1, 2, 0), out=dU[:, f])
            if need_dx:
                np.matmul(U[:, f].transpose(0, 2, 1), Z[:, f], out=dV[c].transpose(1, 0, 2))
        if need_dx:
            # dd = B dV B^T per tile, (C, i, j, th, tw, n), added back onto the padded
            # input where each tile was read (col2im with an a x a kernel, stride m)
            dd = np.matmul(BT.T, dV).reshape(C, a, a, th, tw, n)
            dxpad = np.zeros((C, Hp, Wp, n), dtype=dout.dtype)
            for i in range(a):
                for j in range(a):
                    dxpad[:, i:i + (th - 1) * m + 1:m, j:j + (tw - 1) * m + 1:m] += dd[:, i, j]
            dx[lo:hi] = dxpad[:, ph:ph + H, pw:pw + W].transpose(3, 0, 1, 2)
        return dU

    parts = run_parallel(images, N, np)
    dU = parts[0]
    for p in parts[1:]:
        dU += p
    # dw = G^T dU G for every (filter, channel)
    dw = matmul(G.T, dU.reshape(a * a, F * Cg)).T.reshape(F, Cg, r, r)
    db = dout.sum(axis=(0, 2, 3)) if has_b else None
    return dx, np.ascontiguousarray(dw), db
