"""Tests for Winograd's route of the 3x3 stride-1 convolutions (layers/fast/winograd.py).

The route must compute what the readable im2col route (layers/conv.py) computes: the
transforms are checked against a plain correlation, the layer against the im2col
route for every tile size, in float64 to rounding and in float32 to a tolerance,
and its backward by centered differences in float64.
"""
import numpy as np
import pytest

from engine import parallel
from engine.gradcheck import check_op
from layers.conv import conv2d_backward, conv2d_forward, conv2d_forward_naive
from layers.fast import winograd


# Every (m, r) the route can take: kernel sizes 3 and 5, the tiles with points for them
PAIRS = [(m, r) for r in (3, 5) for m in winograd.TILE_SIZES if m + r - 1 in winograd.POINTS]


@pytest.fixture
def route(monkeypatch):
    """route(m): Winograd with output tile m only; route(None): im2col only."""
    def use(m):
        monkeypatch.setattr(winograd, "KERNELS", (3, 5) if m else ())
        if m:
            monkeypatch.setattr(winograd, "TILE_SIZES", (m,))
    return use


def test_pairs_cover_both_kernel_sizes():
    assert {r for _, r in PAIRS} == {3, 5} and len(PAIRS) >= 4


@pytest.mark.parametrize("m, r", PAIRS)
def test_transforms_compute_a_correlation_1d_and_2d(m, r, rng):
    AT, G, BT = winograd.transforms(m, r)
    a = m + r - 1
    assert AT.shape == (m, a) and G.shape == (a, r) and BT.shape == (a, a)
    g, d = rng.standard_normal(r), rng.standard_normal(a)
    want = [g @ d[i:i + r] for i in range(m)]
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=1e-12, atol=1e-12)
    g2, d2 = rng.standard_normal((r, r)), rng.standard_normal((a, a))
    want2 = [[np.sum(g2 * d2[i:i + r, j:j + r]) for j in range(m)] for i in range(m)]
    got2 = AT @ ((G @ g2 @ G.T) * (BT @ d2 @ BT.T)) @ AT.T
    np.testing.assert_allclose(got2, want2, rtol=1e-12, atol=1e-12)
    # B^T's entries are small integers (the scaling moved the fractions into G)
    np.testing.assert_array_equal(BT, np.round(BT))


@pytest.mark.parametrize("r, OH, expected", [(3, 6, 3), (3, 7, 4), (3, 13, 4), (3, 27, 4),
                                             (3, 2, 2), (5, 13, 2), (5, 27, 2)])
def test_tile_size_takes_the_fewest_multiplies(r, OH, expected):
    assert winograd.tile_size(r, OH, OH) == expected


@pytest.mark.parametrize("x_shape, w_shape, pad, groups", [
    ((3, 4, 6, 6), (5, 4, 3, 3), 1, 1),      # mini's conv3-5 maps: whole tiles
    ((2, 4, 7, 5), (6, 2, 3, 3), 1, 2),      # groups, maps not a multiple of any tile
    ((2, 3, 9, 8), (4, 3, 3, 3), 0, 1),      # no padding
    ((1, 2, 4, 13), (3, 2, 3, 3), 2, 1),     # more padding than the kernel needs
    ((2, 4, 9, 7), (6, 2, 5, 5), 2, 2),      # 5x5 with groups, like conv2
])
@pytest.mark.parametrize("m", winograd.TILE_SIZES)
def test_winograd_equals_im2col_in_float64(route, rng, m, x_shape, w_shape, pad, groups):
    if m + w_shape[2] - 1 not in winograd.POINTS:
        m = min(winograd.TILE_SIZES)     # no points for that tile: tile_size falls back
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    route(None)
    out, cache = conv2d_forward(x, w, b, 1, pad, groups)
    dout = rng.standard_normal(out.shape)
    want = (out,) + conv2d_backward(dout, cache)
    route(m)
    out, cache = conv2d_forward(x, w, b, 1, pad, groups)
    assert isinstance(cache[0], winograd.Saved)          # it took Winograd's route
    got = (out,) + conv2d_backward(dout, cache)
    for name, g, v in zip(["out", "dx", "dw", "db"], got, want):
        np.testing.assert_allclose(g, v, rtol=1e-10, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b, 1, pad, groups),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("m", winograd.TILE_SIZES)
def test_winograd_float32_stays_within_a_few_ulps_of_the_scale(route, rng, m):
    # The larger tiles round more (their transforms have entries up to 8): the error,
    # relative to the largest output, stays below 2e-5 where im2col's is about 5e-7.
    x = rng.standard_normal((8, 32, 13, 13))
    w = rng.standard_normal((16, 32, 3, 3))
    exact = conv2d_forward_naive(x, w, None, 1, 1)
    route(m)
    out, cache = conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1)
    assert out.dtype == np.float32
    assert np.abs(out - exact).max() / np.abs(exact).max() < 2e-5
    dx, dw, db = conv2d_backward(np.ones_like(out), cache)
    assert dx.dtype == dw.dtype == np.float32 and db is None


@pytest.mark.parametrize("m, r", PAIRS)
def test_winograd_gradients(route, rng, m, r):
    route(m)
    inputs = {"x": rng.standard_normal((2, 4, 5, 7)), "w": rng.standard_normal((6, 2, r, r)),
              "b": rng.standard_normal(6)}
    results = check_op("conv2d (Winograd)", conv2d_forward, conv2d_backward, inputs,
                       ["x", "w", "b"], kwargs={"stride": 1, "pad": r // 2, "groups": 2},
                       max_checks=60)
    for r in results:
        assert r.passed, f"{r.name}: relative error {r.rel_error:.2e}"


def test_backward_on_another_split_of_the_batch(route, rng):
    # The forward keeps each piece's tiles; a backward run on another number of
    # threads (other pieces) transforms the input again, to the same gradients.
    route(2)
    x, w = rng.standard_normal((6, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    dout = rng.standard_normal((6, 4, 6, 6))
    with parallel.threads(2):
        _, cache = conv2d_forward(x, w, None, 1, 1)
        want = conv2d_backward(dout, cache)
    with parallel.threads(2):
        _, cache = conv2d_forward(x, w, None, 1, 1)
    with parallel.threads(1):
        got = conv2d_backward(dout, cache, need_dx=True)
    for g, v in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g, v, rtol=1e-12, atol=1e-12)
    dx, dw, _ = conv2d_backward(dout, cache, need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dw, want[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("w_shape, stride", [
    ((4, 3, 3, 3), 2),       # strided
    ((4, 3, 11, 11), 1),     # 11x11
    ((4, 3, 3, 2), 1),       # not square
])
def test_other_convolutions_keep_the_im2col_route(rng, w_shape, stride):
    x = rng.standard_normal((2, 3, 12, 12))
    _, cache = conv2d_forward(x, rng.standard_normal(w_shape), None, stride, 1)
    assert not isinstance(cache[0], winograd.Saved)
    _, cache = conv2d_forward(x, rng.standard_normal((4, 3, 3, 3)), None, 1, 1)
    assert isinstance(cache[0], winograd.Saved) == (3 in winograd.KERNELS)
