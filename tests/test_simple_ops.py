"""ReLU, tanh, fully connected, dropout and softmax cross-entropy: gradient checks,
reference values computed another way, dtype preservation and bad input."""
import numpy as np
import pytest

from engine.backend import to_numpy
from engine.gradcheck import check_loss, check_op
from layers.activations import relu_backward, relu_forward, tanh_backward, tanh_forward
from layers.conv import conv2d_backward, conv2d_forward
from layers.dropout import counter_bits, dropout_backward, dropout_forward, keep_mask
from layers.linear import linear_backward, linear_forward
from layers.loss import softmax, softmax_cross_entropy


def away_from_zero(rng, shape, xp, margin=0.05):
    """Random values with |x| >= margin, so finite differences never straddle ReLU's kink."""
    x = rng.standard_normal(shape)
    x = np.sign(x) * (np.abs(x) + margin)
    return xp.asarray(x)


# ---------------------------------------------------------------- ReLU / tanh

def test_relu_forward_backward_values(xp):
    x = xp.asarray(np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]], dtype=np.float32))
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(to_numpy(out), [[0, 0, 0, 0.5, 3.0]])
    dx = relu_backward(xp.ones_like(x) * 7, cache)
    np.testing.assert_array_equal(to_numpy(dx), [[0, 0, 0, 7, 7]])
    assert out.dtype == np.float32 and dx.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inplace", [False, True])
def test_relu_chunked_forward_matches_where(rng, monkeypatch, dtype, inplace):
    # The NumPy forward compares x with a cached array of zeros, chunk by chunk; with
    # a 7-element chunk, 3 * 5 * 11 values end in a partial chunk, and the chunks
    # cross the pieces that the threads take. NaN must stay NaN, -0.0 becomes 0.
    import layers.fast.activations as act
    monkeypatch.setattr(act, "_CHUNK", 7)
    monkeypatch.setattr(act, "_ZEROS", {})
    from engine import parallel
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 16)
    x = rng.standard_normal((3, 5, 11)).astype(dtype)
    x[0, 0, :3] = [np.nan, -0.0, 0.0]
    want = np.where(x > 0, x, 0).astype(dtype)
    want[0, 0, 0] = np.nan
    for n in (1, 3):
        with parallel.threads(n):
            xin = x.copy()
            out, _ = relu_forward(xin, inplace=inplace)
            np.testing.assert_array_equal(out, want)
            assert out.dtype == dtype and (out is xin) == inplace
    # Non-contiguous input (a transposed view) takes the plain path.
    out, _ = relu_forward(x.transpose(2, 0, 1))
    np.testing.assert_array_equal(out, want.transpose(2, 0, 1))


def test_relu_gradcheck(xp, rng):
    x = away_from_zero(rng, (3, 4, 5), xp)
    res = check_op("relu", relu_forward, lambda d, c: relu_backward(d, c), {"x": x}, ["x"])
    assert all(r.passed for r in res), res


def test_tanh_gradcheck_and_saturation(xp, rng):
    x = xp.asarray(rng.standard_normal((4, 6)))
    res = check_op("tanh", tanh_forward, tanh_backward, {"x": x}, ["x"])
    assert all(r.passed for r in res), res
    # tanh saturates: its gradient at x = 10 is below 1e-7, ReLU's stays 1.
    big = xp.asarray(np.array([10.0]))
    _, c = tanh_forward(big)
    assert float(to_numpy(tanh_backward(xp.ones_like(big), c))[0]) < 1e-7


@pytest.mark.parametrize("fn", [relu_forward, tanh_forward])
def test_activations_reject_integers(fn):
    with pytest.raises(TypeError, match=fn.__name__):
        fn(np.arange(4))


# ---------------------------------------------------------------- linear

def test_linear_matches_loops(xp, rng):
    x = rng.standard_normal((3, 5))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4)
    out, _ = linear_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    ref = np.array([[sum(x[n, i] * w[o, i] for i in range(5)) + b[o] for o in range(4)]
                    for n in range(3)])
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-12)


def test_linear_gradcheck(xp, rng):
    inputs = {k: xp.asarray(rng.standard_normal(s))
              for k, s in [("x", (4, 7)), ("w", (3, 7)), ("b", (3,))]}
    res = check_op("linear", linear_forward, linear_backward, inputs, ["x", "w", "b"])
    assert len(res) == 3 and all(r.passed for r in res), res


def test_linear_float32_stays_float32(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3)).astype(np.float32))
    w = xp.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    b = xp.zeros(4, dtype=np.float32)
    out, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(xp.ones_like(out), cache)
    assert {a.dtype for a in (out, dx, dw, db)} == {np.dtype(np.float32)}


def test_linear_bad_input():
    x = np.zeros((2, 3), np.float32)
    w = np.zeros((4, 3), np.float32)
    b = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"linear_forward: x has 5 features but w expects 3"):
        linear_forward(np.zeros((2, 5), np.float32), w, b)
    with pytest.raises(ValueError, match=r"linear_forward: x must have 2 dimensions, got 4"):
        linear_forward(np.zeros((2, 3, 1, 1), np.float32), w, b)
    with pytest.raises(TypeError, match=r"linear_forward: x must be a float32 or float64 array"):
        linear_forward(np.zeros((2, 3), np.int64), w, b)
    with pytest.raises(TypeError, match=r"linear_forward: all arrays must share one dtype"):
        linear_forward(x.astype(np.float64), w, b)
    with pytest.raises(ValueError, match=r"linear_forward: b has shape \(3,\)"):
        linear_forward(x, w, np.zeros(3, np.float32))


# ---------------------------------------------------------------- dropout

def test_dropout_mask_statistics_and_scaling(xp):
    x = xp.ones((200, 500), dtype=np.float32)
    out, cache = dropout_forward(x, p=0.5, seed=3)
    kept = to_numpy(out) != 0
    assert abs(kept.mean() - 0.5) < 0.01          # 100,000 Bernoulli(0.5): sd 0.0016
    np.testing.assert_array_equal(to_numpy(out)[kept], 2.0)  # inverted: kept units scaled by 1/(1-p)
    assert abs(float(to_numpy(out).mean()) - 1.0) < 0.02    # unbiased in expectation
    out3, _ = dropout_forward(x, p=0.2, seed=3)
    assert abs((to_numpy(out3) != 0).mean() - 0.8) < 0.01
    assert out.dtype == np.float32


def test_dropout_paper_mode_test_time_scaling(xp, rng):
    x = xp.asarray(rng.standard_normal((4, 8)).astype(np.float32))
    out, cache = dropout_forward(x, p=0.5, train=False, mode="paper")
    np.testing.assert_allclose(to_numpy(out), 0.5 * to_numpy(x))
    np.testing.assert_allclose(to_numpy(dropout_backward(xp.ones_like(x), cache)), 0.5)
    out, _ = dropout_forward(x, p=0.5, train=True, mode="paper", seed=0)
    vals = to_numpy(out)[to_numpy(out) != 0]
    assert np.all(np.isin(vals, to_numpy(x)))      # kept units are not rescaled in paper mode
    out, _ = dropout_forward(x, p=0.5, train=False)  # inverted: identity at test time
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x))


def test_dropout_reproducible_from_seed(xp):
    x = xp.ones((10, 10), dtype=np.float32)
    a, _ = dropout_forward(x, seed=7)
    b, _ = dropout_forward(x, seed=7)
    c, _ = dropout_forward(x, seed=8)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert not np.array_equal(to_numpy(a), to_numpy(c))


def test_counter_bits_are_uniform_and_independent(xp):
    """The hash behind the masks: every bit a fair coin, neighbouring elements and
    neighbouring steps independent, the same bits on every backend."""
    bits = to_numpy(counter_bits((1 << 18,), [3, 0], xp))
    assert bits.dtype == np.uint32
    np.testing.assert_array_equal(bits, counter_bits((1 << 18,), [3, 0], np))
    ones = ((bits[:, None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0)
    assert np.all(np.abs(ones - 0.5) < 0.006), ones      # 262,144 coins: sd 0.001
    keep = keep_mask((512, 512), 0.5, [3, 0], np)
    assert abs(keep.mean() - 0.5) < 0.005
    assert abs((keep[:, 1:] & keep[:, :-1]).mean() - 0.25) < 0.005   # left/right
    assert abs((keep[1:] & keep[:-1]).mean() - 0.25) < 0.005         # row to row
    nxt = keep_mask((512, 512), 0.5, [3, 1], np)                      # the next step
    assert abs((keep == nxt).mean() - 0.5) < 0.005
    other = keep_mask((512, 512), 0.5, [4, 0], np)                    # another seed
    assert abs((keep == other).mean() - 0.5) < 0.005
    assert keep_mask((100,), 0.0, 1, np).all()                        # p = 0 keeps all
    assert abs(keep_mask((1 << 16,), 0.9, 1, np).mean() - 0.1) < 0.006
    with pytest.raises(ValueError, match=r"counter_bits: at most 2\*\*32 elements"):
        counter_bits((1 << 16, (1 << 16) + 1), 0, np)


def test_dropout_same_mask_on_every_backend(xp):
    """A seeded mask is the hash's, not a backend's generator's: NumPy and CuPy agree."""
    x = np.arange(1, 61, dtype=np.float32).reshape(6, 10)
    a, _ = dropout_forward(xp.asarray(x), p=0.3, seed=[5, 2])
    b, _ = dropout_forward(x, p=0.3, seed=[5, 2])
    np.testing.assert_array_equal(to_numpy(a), b)
    np.testing.assert_array_equal(b != 0, keep_mask(x.shape, 0.3, [5, 2], np))


def test_dropout_gradcheck_fixed_mask(xp, rng):
    x = xp.asarray(rng.standard_normal((5, 6)))
    for mode in ("inverted", "paper"):
        res = check_op("dropout", dropout_forward, dropout_backward, {"x": x}, ["x"],
                       kwargs={"p": 0.5, "seed": 11, "mode": mode})
        assert all(r.passed for r in res), res


def test_dropout_bad_p():
    with pytest.raises(ValueError, match=r"dropout_forward: p must be in \[0, 1\), got 1.0"):
        dropout_forward(np.ones(3, np.float32), p=1.0)
    with pytest.raises(ValueError, match=r"dropout_forward: p must be in \[0, 1\), got '0.5'"):
        dropout_forward(np.ones(3, np.float32), p="0.5")
    with pytest.raises(ValueError, match="dropout_forward: mode"):
        dropout_forward(np.ones(3, np.float32), mode="bogus")


# ---------------------------------------------------------------- softmax cross-entropy

def test_softmax_cross_entropy_matches_formula(xp, rng):
    z = rng.standard_normal((5, 4))
    y = np.array([0, 3, 1, 1, 2])
    loss, dz = softmax_cross_entropy(xp.asarray(z), xp.asarray(y))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    ref = -np.mean(np.log(p[np.arange(5), y]))
    assert abs(float(loss) - ref) < 1e-12
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(to_numpy(dz), (p - onehot) / 5, atol=1e-14)
    np.testing.assert_allclose(to_numpy(softmax(xp.asarray(z))), p, rtol=1e-12)


def test_softmax_cross_entropy_gradcheck(xp, rng):
    z = xp.asarray(rng.standard_normal((6, 5)))
    y = xp.asarray(rng.integers(0, 5, size=6))
    res = check_loss("softmax_cross_entropy", lambda logits: softmax_cross_entropy(logits, y),
                     {"logits": z}, "logits")
    assert all(r.passed for r in res), res


def test_softmax_cross_entropy_extreme_logits(xp):
    z = xp.asarray(np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=np.float32))
    y = xp.asarray(np.array([2, 1]))
    loss, dz = softmax_cross_entropy(z, y)
    # Row 0 puts all mass on class 0 while the label is 2: -log p = 2e4 exactly.
    # Row 1 splits mass between classes 1 and 2: -log p = log 2.
    assert np.isfinite(float(loss)) and np.all(np.isfinite(to_numpy(dz)))
    assert abs(float(loss) - (2e4 + np.log(2)) / 2) < 1e-2
    assert loss.dtype == np.float32 and dz.dtype == np.float32


def test_softmax_cross_entropy_bad_labels():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*\[0, 3\]"):
        softmax_cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"got values in \[-1, 0\]"):
        softmax_cross_entropy(z, np.array([-1, 0]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        softmax_cross_entropy(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        softmax_cross_entropy(z, np.array([0, 1, 2]))


# ---------------------------------------------------------------- upstream gradients

def _forwards_float32(rng):
    """(name, backward(dout), the forward output) for each elementwise/fc op."""
    x = rng.standard_normal((2, 3)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    lin, lc = linear_forward(x, w, np.zeros(4, np.float32))
    rel, rc = relu_forward(x.copy())
    th, tc = tanh_forward(x)
    dr, dc = dropout_forward(x, 0.5, seed=1)
    # at test time too (it returned any dout unchecked), in both modes
    dt, dtc = dropout_forward(x, 0.5, train=False)
    dp, dpc = dropout_forward(x, 0.5, train=False, mode="paper")
    xc = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    cv, cc = conv2d_forward(xc, rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                            np.zeros(4, np.float32), stride=2)
    return [("linear_backward", lambda d: linear_backward(d, lc), lin),
            ("relu_backward", lambda d: relu_backward(d, rc), rel),
            ("tanh_backward", lambda d: tanh_backward(d, tc), th),
            ("dropout_backward", lambda d: dropout_backward(d, dc), dr),
            ("dropout_backward", lambda d: dropout_backward(d, dtc), dt),
            ("dropout_backward", lambda d: dropout_backward(d, dpc), dp),
            ("conv2d_backward", lambda d: conv2d_backward(d, cc), cv)]


def test_backwards_refuse_a_dout_of_another_dtype_or_shape(rng):
    # A float64 dout after a float32 forward used to come back as float64 gradients,
    # upcasting everything below it without a word (conv, LRN and pool refused it).
    for name, backward, out in _forwards_float32(rng):
        with pytest.raises(TypeError, match=rf"{name}: dout must have the forward's dtype "
                                            r"float32, got float64"):
            backward(out.astype(np.float64))
        with pytest.raises(ValueError, match=rf"{name}: dout has shape \(2, 9\)"):
            backward(np.ones((2, 9), np.float32))
        with pytest.raises(TypeError, match=rf"{name}: dout must be a float32 or float64"):
            backward(np.ones(out.shape, np.int32))
        with pytest.raises(TypeError, match=rf"{name}: dout must be a NumPy or CuPy array, "
                                            r"got list"):
            backward(np.ones(out.shape, np.float32).tolist())
        g = backward(np.ones_like(out))          # the right dout still works
        for a in (g if isinstance(g, tuple) else (g,)):
            assert a.dtype == np.float32


def test_float16_is_refused_by_name():
    # float16 passed the old 'floating kind' check, then met kernels written for 32/64
    with pytest.raises(TypeError, match="relu_forward: x must be a float32 or float64 array, "
                                        "got dtype float16"):
        relu_forward(np.ones(3, np.float16))


def test_gpu_labels_with_cpu_logits_are_refused_by_name(cp):
    with pytest.raises(TypeError, match="softmax_cross_entropy: labels are on the GPU"):
        softmax_cross_entropy(np.zeros((2, 3), np.float32), cp.asarray(np.array([0, 1])))
    with pytest.raises(TypeError, match="relu_backward: arrays must all be on the CPU"):
        out, cache = relu_forward(np.ones((2, 3), np.float32))
        relu_backward(cp.ones((2, 3), dtype=cp.float32), cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_readable_route_equals_the_threaded_chunks(rng, monkeypatch, dtype):
    # layers/activations.py's one call each way (what CuPy runs), made to run on
    # NumPy, against layers/fast/activations.py's chunks over the threads
    from engine import parallel
    import layers.fast.activations as fast_act
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 16)
    monkeypatch.setattr(fast_act, "_CHUNK", 7)
    monkeypatch.setattr(fast_act, "_ZEROS", {})
    x = rng.standard_normal((3, 5, 11)).astype(dtype)
    d = rng.standard_normal(x.shape).astype(dtype)
    with parallel.threads(3):
        out_fast, cache = relu_forward(x)
        dx_fast = relu_backward(d, cache)
    monkeypatch.setattr(fast_act, "relu_forward_applies", lambda x: False)
    monkeypatch.setattr(fast_act, "relu_backward_applies", lambda dout, out: False)
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, out_fast)
    np.testing.assert_array_equal(relu_backward(d, cache), dx_fast)
