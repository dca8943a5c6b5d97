"""Max-pooling: overlapping windows, the tie rule, gradient accumulation."""
import numpy as np
import pytest

from engine.backend import to_numpy
from engine.gradcheck import check_op
from layers.pool import (maxpool2d_backward, maxpool2d_backward_naive, maxpool2d_forward,
                         maxpool2d_forward_naive)

CONFIGS = [
    (3, 2),             # the paper's overlapping pooling
    (2, 2),             # the non-overlapping baseline it was compared with
    ((3, 2), (2, 1)),   # rectangular window and stride
    (2, 3),             # stride > size: some pixels belong to no window
    (1, 1),
]


@pytest.mark.parametrize("size,stride", CONFIGS)
def test_forward_backward_match_naive_loops(xp, rng, size, stride):
    x = rng.standard_normal((2, 3, 9, 11))
    out, cache = maxpool2d_forward(xp.asarray(x), size, stride)
    np.testing.assert_array_equal(to_numpy(out), maxpool2d_forward_naive(x, size, stride))
    dout = rng.standard_normal(out.shape)
    dx = maxpool2d_backward(xp.asarray(dout), cache)
    np.testing.assert_allclose(to_numpy(dx), maxpool2d_backward_naive(dout, x, size, stride),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("size,stride", CONFIGS)
def test_many_ties_match_first_argmax(xp, rng, size, stride):
    # Values from {0, 1, 2}: nearly every window has ties. The reference sends each
    # window's gradient to np.argmax of the flattened window, the first maximum in
    # row-major order.
    x = rng.integers(0, 3, size=(2, 3, 9, 11)).astype(np.float64)
    out, cache = maxpool2d_forward(xp.asarray(x), size, stride)
    np.testing.assert_array_equal(to_numpy(out), maxpool2d_forward_naive(x, size, stride))
    dout = rng.standard_normal(out.shape)
    dx = maxpool2d_backward(xp.asarray(dout), cache)
    np.testing.assert_allclose(to_numpy(dx), maxpool2d_backward_naive(dout, x, size, stride),
                               rtol=1e-12, atol=0)


def test_tie_goes_to_first_maximum_row_major(xp):
    # The maximum 5 appears at (0, 2) and (1, 0). Row-major order reaches (0, 2)
    # first; column-major order would pick (1, 0). Only (0, 2) gets the gradient.
    x = np.array([[1, 0, 5],
                  [5, 2, 3],
                  [4, 5, 1]], dtype=np.float64).reshape(1, 1, 3, 3)
    out, cache = maxpool2d_forward(xp.asarray(x), 3, 2)
    assert to_numpy(out).ravel().tolist() == [5.0]
    dx = to_numpy(maxpool2d_backward(xp.asarray(np.full((1, 1, 1, 1), 7.0)), cache))
    expected = np.zeros((3, 3))
    expected[0, 2] = 7.0
    np.testing.assert_array_equal(dx[0, 0], expected)

    # All equal: the top-left corner takes it all.
    out, cache = maxpool2d_forward(xp.asarray(np.ones((1, 1, 3, 3))), 3, 2)
    dx = to_numpy(maxpool2d_backward(xp.asarray(np.ones((1, 1, 1, 1))), cache))
    assert dx[0, 0, 0, 0] == 1.0 and dx.sum() == 1.0


def test_overlapping_windows_add_their_gradients(xp):
    # 3x5 input, 3x3 windows with stride 2: the windows cover columns 0-2 and 2-4,
    # so column 2 belongs to both. Put the maximum there: it collects both gradients.
    x = np.zeros((1, 1, 3, 5))
    x[0, 0, 1, 2] = 10.0
    x[0, 0, 0, 0] = 1.0   # smaller maxima elsewhere must get nothing
    x[0, 0, 2, 4] = 2.0
    out, cache = maxpool2d_forward(xp.asarray(x), 3, 2)
    assert to_numpy(out).ravel().tolist() == [10.0, 10.0]
    dx = to_numpy(maxpool2d_backward(xp.asarray(np.array([2.0, 3.0]).reshape(1, 1, 1, 2)), cache))
    expected = np.zeros((3, 5))
    expected[1, 2] = 5.0
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("H,W,size,stride", [
    (55, 55, 3, 2),     # AlexNet pool1: 55 -> 27
    (27, 27, 3, 2),     # pool2: 27 -> 13
    (13, 13, 3, 2),     # pool5: 13 -> 6
    (9, 11, 2, 2),
    (10, 7, (4, 3), (3, 2)),
    (5, 5, 5, 1),       # window as large as the input: one output
    (6, 6, 3, 4),
])
def test_output_size_formula(xp, H, W, size, stride):
    kh, kw = (size, size) if isinstance(size, int) else size
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    out, _ = maxpool2d_forward(xp.zeros((2, 3, H, W)), size, stride)
    assert out.shape == (2, 3, (H - kh) // sh + 1, (W - kw) // sw + 1)


@pytest.mark.parametrize("size,stride", [(3, 2), (2, 2), ((3, 2), (1, 2))])
def test_gradient_check(xp, rng, size, stride):
    # A scaled permutation: no ties, and any two values differ by 0.1 >> h = 1e-5,
    # so the finite differences never change which entry is the maximum.
    shape = (2, 2, 7, 8)
    x = xp.asarray(rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1)
    results = check_op("maxpool2d", maxpool2d_forward, maxpool2d_backward, {"x": x}, ["x"],
                       kwargs=dict(size=size, stride=stride), max_checks=None)
    assert all(r.passed for r in results), results


def test_float32_stays_float32(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3, 9, 9)).astype(np.float32))
    out, cache = maxpool2d_forward(x)
    assert out.dtype == np.float32
    dx = maxpool2d_backward(xp.ones_like(out), cache)
    assert dx.dtype == np.float32 and dx.shape == x.shape


def test_large_window_argmax_dtype(xp, rng):
    # 12 x 12 = 144 offsets do not fit in int8; the wider offset type must be used.
    x = rng.permutation(2 * 13 * 13).reshape(1, 2, 13, 13).astype(np.float64)
    out, cache = maxpool2d_forward(xp.asarray(x), 12, 1)
    assert cache[0].dtype == np.int16
    np.testing.assert_array_equal(to_numpy(out), maxpool2d_forward_naive(x, 12, 1))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(to_numpy(maxpool2d_backward(xp.asarray(dout), cache)),
                               maxpool2d_backward_naive(dout, x, 12, 1), rtol=1e-12)


def test_a_nan_in_a_window_makes_its_maximum_nan(xp, rng):
    # As np.max does: a diverging network shows NaNs downstream, not silent numbers.
    x = rng.standard_normal((1, 2, 7, 7))
    x[0, 1, 4, 4] = np.nan
    out, _ = maxpool2d_forward(xp.asarray(x))
    np.testing.assert_array_equal(to_numpy(out), maxpool2d_forward_naive(x))
    assert np.isnan(to_numpy(out)).sum() == 4         # the 4 windows that hold (4, 4)


def test_a_nan_takes_the_gradient_as_np_argmax_says_on_every_route(xp):
    # The CPU route used to keep the maximum found before a NaN ('>' is never true
    # against NaN), where np.argmax and the GPU kernel pick the NaN: the two sent the
    # gradient to different pixels.
    x = np.array([0.0, np.nan, 2.0, 1.0, 5.0, np.nan, 3.0, -1.0, 4.0]).reshape(1, 1, 3, 3)
    x = np.concatenate([x, x[:, :, ::-1, ::-1], np.ones_like(x)], axis=1)
    out, cache = maxpool2d_forward(xp.asarray(x), size=3, stride=1)
    argmax = to_numpy(cache[0]).reshape(-1)
    assert argmax.tolist() == [int(np.argmax(x[0, c].reshape(-1))) for c in range(3)] \
        == [1, 3, 0]
    dx = to_numpy(maxpool2d_backward(xp.ones_like(out), cache))
    np.testing.assert_array_equal(dx, maxpool2d_backward_naive(np.ones((1, 3, 1, 1)), x, 3, 1))


def test_the_kernel_method_is_for_gpu_arrays_only(rng):
    x = rng.standard_normal((1, 2, 7, 7))
    out, cache = maxpool2d_forward(x)
    with pytest.raises(ValueError, match="method 'kernel' is a GPU kernel, for CuPy arrays"):
        maxpool2d_backward(np.ones_like(out), cache, method="kernel")


def test_does_not_modify_inputs(rng):
    x = rng.standard_normal((1, 2, 7, 7))
    x0 = x.copy()
    out, cache = maxpool2d_forward(x)
    dout = rng.standard_normal(out.shape)
    d0 = dout.copy()
    maxpool2d_backward(dout, cache)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dout, d0)


def test_bad_inputs(rng):
    x = rng.standard_normal((1, 2, 7, 11))
    with pytest.raises(ValueError, match=r"maxpool2d_forward: x must have 4 dimensions, got 3"):
        maxpool2d_forward(x[0])
    with pytest.raises(TypeError, match=r"maxpool2d_forward: x must be a float32 or float64 array"):
        maxpool2d_forward(np.ones((1, 1, 4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match=r"maxpool2d_forward: size must be an integer >= 1, got 0"):
        maxpool2d_forward(x, size=0)
    with pytest.raises(ValueError, match=r"maxpool2d_forward: stride must be an int or a pair"):
        maxpool2d_forward(x, stride=(1, 2, 3))
    with pytest.raises(ValueError, match=r"maxpool2d_forward: stride must be an integer >= 1, got 1.5"):
        maxpool2d_forward(x, stride=1.5)
    with pytest.raises(ValueError, match=r"maxpool2d_forward: the pooling window \(8, 8\) must fit "
                                         r"in the input \(H, W\) = \(7, 11\)"):
        maxpool2d_forward(x, size=8)
    with pytest.raises(ValueError, match=r"maxpool2d_forward: the pooling window \(3, 12\)"):
        maxpool2d_forward(x, size=(3, 12))

    out, cache = maxpool2d_forward(x)
    with pytest.raises(ValueError, match=r"maxpool2d_backward: dout must have the shape of the "
                                         r"forward output \(1, 2, 3, 5\), got \(1, 2, 3, 4\)"):
        maxpool2d_backward(out[..., :4], cache)
    with pytest.raises(TypeError, match=r"maxpool2d_backward: dout must have the forward input's "
                                        r"dtype float64, got float32"):
        maxpool2d_backward(out.astype(np.float32), cache)
    with pytest.raises(TypeError, match=r"maxpool2d_backward: dout must be a float32 or float64 array"):
        maxpool2d_backward(out.astype(np.int64), cache)
