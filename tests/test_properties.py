"""Property tests of the ops (hypothesis): on shapes and settings drawn at random, each
op equals its naive reference, and its backward passes the gradient check.

The hand-picked cases in test_conv.py, test_pool.py and test_lrn.py test what a reader
thinks of; these draw what nobody picked: rectangular kernels and strides, padding
wider than the stride, pooling windows that overlap, leave gaps (stride > window) or
tile exactly, LRN windows wider than the channels. Each draw is a shape, the settings
and a seed for the array values. The draws are derandomized (the same examples on
every run, so CI does not flake) and a few dozen per property, so the file runs in
seconds.
"""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine import parallel
from engine.gradcheck import check_op
from engine.im2col import col2im, conv_output_size, im2col
from layers.conv import conv2d_backward, conv2d_forward, conv2d_forward_naive
from layers.lrn import lrn_backward, lrn_forward, lrn_forward_naive
from layers.pool import (maxpool2d_backward, maxpool2d_backward_naive, maxpool2d_forward,
                         maxpool2d_forward_naive)

EXAMPLES = settings(derandomize=True, max_examples=30, deadline=None)
FEW = settings(derandomize=True, max_examples=25, deadline=None)   # the gradient checks
seeds = st.integers(0, 2**32 - 1)


@pytest.fixture(autouse=True)
def _thread_small_arrays(monkeypatch):
    # The ops keep arrays below MIN_PARALLEL_SIZE elements on one thread; the drawn
    # arrays are small, so lower it: the threaded routes are drawn too.
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 64)


# ----------------------------------------------------------------------- strategies

@st.composite
def conv_settings(draw):
    """(x shape, w shape, stride, pad, groups) of a convolution whose kernel fits."""
    groups = draw(st.integers(1, 3))
    cg, fg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), 11))
    w = draw(st.integers(max(1, kw - 2 * pw), 11))
    n = draw(st.integers(1, 3))
    # a pair only where the two differ, so that the int form is drawn too
    stride = sh if sh == sw else (sh, sw)
    pad = ph if ph == pw else (ph, pw)
    return (n, groups * cg, h, w), (groups * fg, cg, kh, kw), stride, pad, groups


@st.composite
def pool_settings(draw):
    """(x shape, window, stride): windows that overlap, tile or leave gaps."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(kh, 12)), draw(st.integers(kw, 12))
    size = kh if kh == kw else (kh, kw)
    stride = sh if sh == sw else (sh, sw)
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), size, stride


@st.composite
def lrn_settings(draw):
    """(x shape, size, alpha, beta, k): odd windows up to wider than the channels, alpha
    up to 1 (at the paper's 1e-4 a wrong window hardly shows)."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 9)),
             draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    size = draw(st.sampled_from([1, 3, 5, 7, 9, 11]))
    alpha = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.5, 1.0]))
    beta = draw(st.sampled_from([0.5, 0.75, 1.0, 1.5]))
    k = draw(st.sampled_from([0.5, 1.0, 2.0]))
    return shape, size, alpha, beta, k


def pair(v):
    return (v, v) if isinstance(v, int) else v


def tie_free(rng, shape):
    """Distinct values at least 1e-3 apart: no perturbation of the gradient check (1e-5)
    changes which entry of a pooling window is the maximum."""
    n = int(np.prod(shape))
    return rng.permutation(n).reshape(shape) * 1e-3 + rng.standard_normal()


# ------------------------------------------------------- im2col and col2im, by loops

def im2col_loops(x, kh, kw, stride, pad):
    """cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i, ow*sw + j], entry by entry."""
    (sh, sw), (ph, pw) = pair(stride), pair(pad)
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((C, kh, kw, N, OH, OW), dtype=x.dtype)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                for n in range(N):
                    for oh in range(OH):
                        for ow in range(OW):
                            cols[c, i, j, n, oh, ow] = xpad[n, c, oh * sh + i, ow * sw + j]
    return cols.reshape(C * kh * kw, N * OH * OW)


def col2im_loops(cols, x_shape, kh, kw, stride, pad):
    """Each column entry added onto the input pixel it came from; padding dropped."""
    (sh, sw), (ph, pw) = pair(stride), pair(pad)
    N, C, H, W = x_shape
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    cols = cols.reshape(C, kh, kw, N, OH, OW)
    dxpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                for n in range(N):
                    for oh in range(OH):
                        for ow in range(OW):
                            dxpad[n, c, oh * sh + i, ow * sw + j] += cols[c, i, j, n, oh, ow]
    return dxpad[:, :, ph:ph + H, pw:pw + W]


@EXAMPLES
@given(conv_settings(), seeds)
def test_im2col_and_col2im_equal_their_loops_and_are_adjoint(case, seed):
    x_shape, w_shape, stride, pad, _ = case
    kh, kw = w_shape[2:]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    cols = im2col(x, kh, kw, pair(stride), pair(pad))
    np.testing.assert_array_equal(cols, im2col_loops(x, kh, kw, stride, pad))
    y = rng.standard_normal(cols.shape)
    dx = col2im(y, x_shape, kh, kw, pair(stride), pair(pad))
    np.testing.assert_allclose(dx, col2im_loops(y, x_shape, kh, kw, stride, pad),
                               rtol=1e-12, atol=1e-12)
    # <im2col(x), y> == <x, col2im(y)>: col2im is im2col's transpose
    np.testing.assert_allclose(np.vdot(cols, y), np.vdot(x, dx), rtol=1e-10)


# ----------------------------------------------------------------------------- conv

@EXAMPLES
@given(conv_settings(), seeds, st.booleans())
@example(((2, 3, 19, 19), (4, 3, 11, 11), 4, 0, 1), 0, True)     # conv1's kernel and stride
@example(((2, 4, 7, 7), (6, 2, 5, 5), 1, 2, 2), 0, True)         # conv2's, in two groups
def test_conv_equals_the_naive_loops(case, seed, bias):
    x_shape, w_shape, stride, pad, groups = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if bias else None
    out, _ = conv2d_forward(x, w, b, stride, pad, groups)
    ref = conv2d_forward_naive(x, w, b, stride, pad, groups)
    (sh, sw), (ph, pw) = pair(stride), pair(pad)
    assert out.shape == (x_shape[0], w_shape[0],
                         conv_output_size(x_shape[2], w_shape[2], sh, ph),
                         conv_output_size(x_shape[3], w_shape[3], sw, pw))
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


@FEW
@given(conv_settings(), seeds)
def test_conv_passes_the_gradient_check(case, seed):
    x_shape, w_shape, stride, pad, groups = case
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape),
              "b": rng.standard_normal(w_shape[0])}
    results = check_op("conv2d", conv2d_forward, conv2d_backward, inputs, ["x", "w", "b"],
                       {"stride": stride, "pad": pad, "groups": groups}, max_checks=25,
                       seed=seed % 1000)
    assert all(r.passed for r in results), [(r.name, r.rel_error) for r in results]


# -------------------------------------------------------------------------- pooling

@EXAMPLES
@given(pool_settings(), seeds, st.booleans())
@example(((2, 3, 9, 9), 3, 2), 0, True)          # the paper's overlapping pool, with ties
@example(((1, 2, 8, 7), 2, 3), 0, False)         # stride > window: pixels no window sees
def test_maxpool_equals_the_naive_loops(case, seed, ties):
    x_shape, size, stride = case
    rng = np.random.default_rng(seed)
    # with ties (a few distinct values), every route must send the gradient to the
    # window's first maximum in row-major order, as the loops do
    x = (rng.integers(0, 3, x_shape).astype(np.float64) if ties
         else rng.standard_normal(x_shape))
    out, cache = maxpool2d_forward(x, size, stride)
    np.testing.assert_array_equal(out, maxpool2d_forward_naive(x, size, stride))
    dout = rng.standard_normal(out.shape)
    ref = maxpool2d_backward_naive(dout, x, size, stride)
    for method in ("auto", "masks", "scatter", "windows"):
        np.testing.assert_allclose(maxpool2d_backward(dout.copy(), cache, method=method), ref,
                                   rtol=1e-12, atol=1e-12, err_msg=method)


@FEW
@given(pool_settings(), seeds)
def test_maxpool_passes_the_gradient_check(case, seed):
    x_shape, size, stride = case
    rng = np.random.default_rng(seed)
    results = check_op("maxpool2d", maxpool2d_forward, maxpool2d_backward,
                       {"x": tie_free(rng, x_shape)}, ["x"], {"size": size, "stride": stride},
                       max_checks=40, seed=seed % 1000)
    assert all(r.passed for r in results), [(r.name, r.rel_error) for r in results]


# ------------------------------------------------------------------------------ LRN

@EXAMPLES
@given(lrn_settings(), seeds)
def test_lrn_equals_the_naive_loop(case, seed):
    shape, size, alpha, beta, k = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out, _ = lrn_forward(x, size, alpha, beta, k)
    np.testing.assert_allclose(out, lrn_forward_naive(x, size, alpha, beta, k),
                               rtol=1e-12, atol=1e-14)


@FEW
@given(lrn_settings(), seeds)
def test_lrn_passes_the_gradient_check(case, seed):
    shape, size, alpha, beta, k = case
    x = np.random.default_rng(seed).standard_normal(shape)
    results = check_op("lrn", lrn_forward, lrn_backward, {"x": x}, ["x"],
                       {"size": size, "alpha": alpha, "beta": beta, "k": k}, max_checks=40,
                       seed=seed % 1000)
    assert all(r.passed for r in results), [(r.name, r.rel_error) for r in results]
