"""Local response normalization: the paper's formula, its gradient, other conventions."""
import numpy as np
import pytest

from engine.backend import to_numpy
from engine.gradcheck import check_op
from layers.lrn import lrn_backward, lrn_forward, lrn_forward_naive


def _x(rng, shape=(2, 7, 3, 4), dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("size", [5, 3, 1, 9])
@pytest.mark.parametrize("beta", [0.75, 0.5, 1.3])
def test_forward_matches_naive_channel_loop(xp, rng, size, beta):
    # alpha = 1 makes the normalization strong, so a channel window off by one
    # (or a border clipped the wrong way) changes the output visibly.
    x = xp.asarray(_x(rng))
    out, _ = lrn_forward(x, size=size, alpha=1.0, beta=beta, k=2.0)
    ref = lrn_forward_naive(x, size=size, alpha=1.0, beta=beta, k=2.0)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=1e-12, atol=0)


def test_forward_matches_naive_paper_constants(xp, rng):
    x = xp.asarray(np.abs(_x(rng, (2, 16, 5, 5))) * 30)  # big activations, so LRN bites
    out, _ = lrn_forward(x)
    ref = lrn_forward_naive(x)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=1e-12, atol=0)


def test_hand_computed_values(xp):
    # One pixel, three channels a = (1, 2, 3); alpha = 1, beta = 0.75, k = 2.
    a = xp.asarray(np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1))
    # size 5: every window covers all three channels, sum of squares 14,
    # so b[0] = 1 / (2 + 14)^0.75 = 1 / 8.
    out5, _ = lrn_forward(a, size=5, alpha=1.0, beta=0.75, k=2.0)
    assert to_numpy(out5)[0, 0, 0, 0] == pytest.approx(0.125, rel=1e-14)
    # size 3: channel 0 sees channels 0..1 (1 + 4), channel 1 sees 0..2 (14),
    # channel 2 sees 1..2 (4 + 9).
    out3, _ = lrn_forward(a, size=3, alpha=1.0, beta=0.75, k=2.0)
    expected = [1 / (2 + 5) ** 0.75, 2 / (2 + 14) ** 0.75, 3 / (2 + 13) ** 0.75]
    np.testing.assert_allclose(to_numpy(out3).ravel(), expected, rtol=1e-14)
    assert expected[1] == pytest.approx(0.25)


def test_pytorch_convention_divides_alpha_by_n(rng):
    # PyTorch's F.local_response_norm, written out in NumPy: square, zero-pad the
    # channel axis by n//2 on both sides, average n consecutive channels (average
    # pooling with count_include_pad=True, so always divided by n, borders too),
    # then b = a / (k + alpha_pt * average)^beta.
    n, alpha_pt, beta, k = 5, 5e-4, 0.75, 2.0
    x = np.abs(_x(rng, (2, 7, 3, 3))) * 20
    C = x.shape[1]
    padded = np.pad(x * x, ((0, 0), (n // 2, (n - 1) // 2), (0, 0), (0, 0)))
    avg = sum(padded[:, d:d + C] for d in range(n)) / n
    torch_style = x / (k + alpha_pt * avg) ** beta

    ours, _ = lrn_forward(x, size=n, alpha=alpha_pt / n, beta=beta, k=k)
    np.testing.assert_allclose(ours, torch_style, rtol=1e-12)
    # LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2) is the paper's layer exactly.
    paper, _ = lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    np.testing.assert_allclose(paper, torch_style, rtol=1e-12)

    # Dividing by the number of channels actually summed at the borders would be a
    # different layer: channel 0 sums 3 channels, not 5.
    counts = sum(np.pad(np.ones(C), (n // 2, (n - 1) // 2))[d:d + C] for d in range(n))
    by_count = x / (k + alpha_pt * avg * n / counts[None, :, None, None]) ** beta
    assert not np.allclose(by_count[:, 0], torch_style[:, 0], rtol=1e-6)
    np.testing.assert_allclose(by_count[:, 2:-2], torch_style[:, 2:-2], rtol=1e-12)


def test_tensorflow_convention_no_division(rng):
    # TF: depth_radius r, window 2r + 1, alpha used as given (no division by n).
    r, alpha, beta, bias = 2, 1e-3, 0.75, 2.0
    x = np.abs(_x(rng, (1, 6, 2, 2))) * 10
    C = x.shape[1]
    sq = np.pad(x * x, ((0, 0), (r, r), (0, 0), (0, 0)))
    tf_style = x / (bias + alpha * sum(sq[:, d:d + C] for d in range(2 * r + 1))) ** beta
    ours, _ = lrn_forward(x, size=2 * r + 1, alpha=alpha, beta=beta, k=bias)
    np.testing.assert_allclose(ours, tf_style, rtol=1e-12)


@pytest.mark.parametrize("size,alpha,beta,k", [
    (5, 1.0, 0.75, 2.0),    # strong normalization: the window-sum term dominates
    (3, 1.0, 0.75, 2.0),
    (5, 1e-4, 0.75, 2.0),   # the paper's constants
    (5, 0.5, 1.3, 1.0),     # the generic power path
    (7, 0.3, 0.5, 1.0),     # window wider than half the channels
])
def test_gradient_check(xp, rng, size, alpha, beta, k):
    x = xp.asarray(_x(rng, (2, 7, 3, 3)))
    results = check_op("lrn", lrn_forward, lrn_backward, {"x": x}, ["x"],
                       kwargs=dict(size=size, alpha=alpha, beta=beta, k=k), max_checks=None)
    assert all(r.passed for r in results), results
    assert results[0].checked == x.size


def test_backward_matches_explicit_double_sum(rng):
    # dx[m] = sum_i dout[i] * d b[i] / d a[m], the Jacobian built entry by entry
    # from the formula, for one pixel with 6 channels.
    size, alpha, beta, k = 3, 0.7, 0.75, 1.5
    a = _x(rng, (1, 6, 1, 1))
    g = _x(rng, (1, 6, 1, 1))
    out, cache = lrn_forward(a, size=size, alpha=alpha, beta=beta, k=k)
    dx = lrn_backward(g, cache)
    av, gv = a.ravel(), g.ravel()
    C, h = 6, size // 2
    win = lambda i: range(max(0, i - h), min(C - 1, i + h) + 1)  # noqa: E731
    scale = np.array([k + alpha * sum(av[j] ** 2 for j in win(i)) for i in range(C)])
    J = np.zeros((C, C))  # J[i, m] = d b[i] / d a[m]
    for i in range(C):
        for m in win(i):
            J[i, m] = -2 * alpha * beta * av[i] * av[m] * scale[i] ** (-beta - 1)
        J[i, i] += scale[i] ** -beta
    np.testing.assert_allclose(dx.ravel(), gv @ J, rtol=1e-12)


def test_float32_stays_float32(xp, rng):
    x = xp.asarray(_x(rng, dtype=np.float32))
    for kwargs in (dict(), dict(alpha=np.float64(1e-4), k=np.float64(2.0), beta=np.float64(0.6))):
        out, cache = lrn_forward(x, **kwargs)
        assert out.dtype == np.float32
        dx = lrn_backward(xp.ones_like(out), cache)
        assert dx.dtype == np.float32
    ref = lrn_forward_naive(xp.asarray(to_numpy(x).astype(np.float64)), alpha=1.0)
    out, _ = lrn_forward(x, alpha=1.0)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=1e-5, atol=1e-6)


def test_does_not_modify_inputs(rng):
    x = _x(rng)
    x0 = x.copy()
    out, cache = lrn_forward(x, alpha=1.0)
    dout = _x(rng)
    d0 = dout.copy()
    lrn_backward(dout, cache)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dout, d0)


def test_bad_inputs(rng):
    x = _x(rng)
    with pytest.raises(ValueError, match=r"lrn_forward: x must have 4 dimensions, got 3"):
        lrn_forward(x[0])
    with pytest.raises(TypeError, match=r"lrn_forward: x must be a float32 or float64 array.*int"):
        lrn_forward(np.ones((1, 3, 2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match=r"lrn_forward"):
        lrn_forward([[[[1.0]]]])
    for size in (4, 0, -3, 2.0, True):
        with pytest.raises(ValueError, match=rf"lrn_forward: size must be an odd positive integer.*got {size!r}"):
            lrn_forward(x, size=size)
    with pytest.raises(ValueError, match=r"lrn_forward: k must be > 0.*got 0"):
        lrn_forward(x, k=0)
    with pytest.raises(ValueError, match=r"lrn_forward: alpha must be >= 0, got -1"):
        lrn_forward(x, alpha=-1.0)
    with pytest.raises(TypeError, match=r"lrn_forward: beta must be a real number"):
        lrn_forward(x, beta="0.75")
    for name in ("alpha", "beta", "k"):      # a NaN used to pass and fill the map with NaN
        with pytest.raises(ValueError, match=rf"lrn_forward: {name} must be finite, got nan"):
            lrn_forward(x, **{name: float("nan")})
    with pytest.raises(ValueError, match=r"lrn_forward_naive: size"):
        lrn_forward_naive(x, size=2)

    out, cache = lrn_forward(x)
    with pytest.raises(ValueError, match=r"lrn_backward: dout must have the shape .*\(2, 7, 3, 4\), got \(2, 7, 3, 3\)"):
        lrn_backward(out[..., :3], cache)
    with pytest.raises(TypeError, match=r"lrn_backward: .*dout is float32, x is float64"):
        lrn_backward(out.astype(np.float32), cache)


def test_channel_window_sum_matches_the_window_written_out(rng):
    # The neighbours' adds against each channel's window summed directly: windows
    # clipped at both borders, channels fewer than the window included.
    from layers.lrn import _add_channel_neighbours
    for C, r in [(7, 2), (3, 2), (1, 2), (6, 1), (5, 3)]:
        a = rng.standard_normal((2, C, 3, 4))
        want = np.stack([a[:, max(0, c - r):c + r + 1].sum(axis=1) for c in range(C)], axis=1)
        np.testing.assert_allclose(_add_channel_neighbours(a.copy(), a, r), want, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_readable_route_equals_the_threaded_pieces(rng, monkeypatch, beta):
    # layers/lrn.py's whole-batch code (what CuPy runs), made to run on NumPy, against
    # layers/fast/lrn.py's pieces over the threads: the same steps on every element,
    # so the same numbers to the last bit.
    from engine import parallel
    import layers.fast.lrn as fast_lrn
    x = (np.abs(rng.standard_normal((6, 9, 5, 4))) * 20).astype(np.float32)
    d = rng.standard_normal(x.shape).astype(np.float32)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 64)
    monkeypatch.setattr(fast_lrn, "_PIECE", 200)          # several pieces
    with parallel.threads(3):
        out_fast, c = lrn_forward(x, alpha=1e-2, beta=beta)
        dx_fast = lrn_backward(d, c)
    monkeypatch.setattr(fast_lrn, "applies", lambda xp: False)
    out, c = lrn_forward(x, alpha=1e-2, beta=beta)
    np.testing.assert_array_equal(out, out_fast)
    np.testing.assert_array_equal(lrn_backward(d, c), dx_fast)
