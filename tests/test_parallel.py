"""The fast CPU paths against the plain ones: threads, reused buffers, skipped dx.

Each op that splits its batch over threads (engine/parallel.py) must give what the
same op gives on one thread, up to the order of float additions (dw and db are sums
of per-piece partial sums). Speed is the benchmark's business (bench/cpu.py), not
the tests'.
"""
import numpy as np
import pytest

from alexnet import AlexNet
from engine import parallel
from engine.backend import to_numpy
from layers.activations import relu_backward, relu_forward
from layers.conv import conv2d_backward, conv2d_forward, conv2d_forward_naive
from layers.fast import pool as fast_pool
from layers.fast.linear import matmul_wide
from layers.loss import softmax_cross_entropy
from layers.lrn import lrn_backward, lrn_forward
from layers.pool import maxpool2d_backward, maxpool2d_backward_naive, maxpool2d_forward

MANY = 4          # more threads than this machine may have: several pieces run for sure


@pytest.fixture(autouse=True)
def _thread_small_arrays(monkeypatch):
    # The ops keep arrays below MIN_PARALLEL_SIZE elements on one thread; the test
    # arrays are small, so lower it for every test here: the threaded paths run.
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 64)


def _close(a, b, rtol=1e-12):
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=rtol, atol=rtol)


# ------------------------------------------------------------------ engine/parallel

@pytest.mark.parametrize("n, pieces", [(10, 3), (3, 8), (1, 1), (128, 4)])
def test_split_covers_the_range_evenly(n, pieces):
    ranges = parallel.split(n, pieces)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [hi - lo for lo, hi in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert len(ranges) == min(n, pieces)


def test_run_parallel_results_in_order_and_serial_with_one_thread():
    with parallel.threads(MANY):
        parts = parallel.run_parallel(lambda lo, hi: list(range(lo, hi)), 50)
        assert len(parts) > 1 and sum(parts, []) == list(range(50))
    with parallel.threads(1):
        assert parallel.run_parallel(lambda lo, hi: (lo, hi), 50) == [(0, 50)]
    # Small ops stay in one piece; piece_size asks for small pieces even on one thread.
    with parallel.threads(MANY):
        assert parallel.run_parallel(lambda lo, hi: (lo, hi), 50, size=10) == [(0, 50)]
    with parallel.threads(1):
        parts = parallel.run_parallel(lambda lo, hi: (lo, hi), 8, size=8000, piece_size=1000)
        assert parts == [(i, i + 1) for i in range(8)]


def test_nested_run_parallel_runs_serially_without_deadlock():
    def outer(lo, hi):
        return parallel.run_parallel(lambda a, b: (a, b), 10)
    with parallel.threads(2):
        parts = parallel.run_parallel(outer, 6)
    assert all(p == [(0, 10)] for p in parts)


def test_set_num_threads_validates_and_restores():
    with pytest.raises(ValueError, match="set_num_threads"):
        parallel.set_num_threads(0)
    before = parallel.num_threads()
    with parallel.threads(3):
        assert parallel.num_threads() == 3
    assert parallel.num_threads() == before


def test_a_bad_thread_count_in_the_environment_is_named(monkeypatch):
    for bad in ("abc", "0", "-2"):          # 0 used to become 1 without a word
        monkeypatch.setenv("ALEXNET_NUM_THREADS", bad)
        monkeypatch.setitem(parallel._state, "threads", None)   # read the environment again
        with pytest.raises(ValueError, match=f"ALEXNET_NUM_THREADS must be a whole number "
                                             f"of threads, 1 or more, got '{bad}'"):
            parallel.num_threads()
    monkeypatch.setenv("ALEXNET_NUM_THREADS", "3")
    assert parallel.num_threads() == 3


def blas_threads():
    """Each loaded BLAS's thread count, read by threadpoolctl afresh (not through the
    controllers engine/parallel.py keeps)."""
    import threadpoolctl
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.skipif(not parallel.blas_controllable(), reason="threadpoolctl finds no BLAS "
                    "whose thread count it can set")
def test_single_threaded_blas_restores_the_thread_count():
    before = blas_threads()
    with parallel.single_threaded_blas():
        assert set(blas_threads()) == {1}
        with parallel.single_threaded_blas():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_blas_info_names_the_library_numpy_uses():
    info = parallel.blas_info()
    assert [i["threads"] for i in info] == blas_threads()
    for i in info:
        assert set(i) == {"library", "version", "threading_layer", "threads"}
        assert i["library"] in ("openblas", "mkl", "blis", "flexiblas", "accelerate")
        assert isinstance(i["threads"], int) and i["threads"] >= 1


def test_without_a_controllable_blas_the_guard_does_nothing(monkeypatch):
    monkeypatch.setitem(parallel._blas, "libs", [])
    assert not parallel.blas_controllable() and parallel.blas_info() == []
    with parallel.single_threaded_blas():
        a = np.arange(6.0).reshape(2, 3)
        assert np.array_equal(parallel.matmul(a, a.T), a @ a.T)


# ------------------------------------------------------------------------- conv

CONV_CASES = [
    ((6, 4, 9, 7), (6, 2, 3, 3), 1, 1, 2),
    ((5, 3, 23, 23), (8, 3, 11, 11), 4, 0, 1),      # conv1's kernel and stride
    ((7, 4, 8, 8), (6, 4, 5, 5), 1, 2, 1),          # conv2's kernel and pad
]


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, groups", CONV_CASES)
def test_conv_threads_equal_one_thread(rng, x_shape, w_shape, stride, pad, groups):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    with parallel.threads(1):
        out1, c1 = conv2d_forward(x, w, b, stride, pad, groups)
        d = rng.standard_normal(out1.shape)
        g1 = conv2d_backward(d, c1)
    with parallel.threads(MANY):
        outn, cn = conv2d_forward(x, w, b, stride, pad, groups)
        gn = conv2d_backward(d, cn)
    _close(outn, out1)          # BLAS may order a sum differently for another block size
    for a, e in zip(gn, g1):
        _close(a, e)
    _close(out1, conv2d_forward_naive(x, w, b, stride, pad, groups))


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, groups", CONV_CASES)
def test_conv_workspace_reuse_and_recompute(xp, rng, x_shape, w_shape, stride, pad, groups):
    x = xp.asarray(rng.standard_normal(x_shape))
    w = xp.asarray(rng.standard_normal(w_shape))
    b = xp.asarray(rng.standard_normal(w_shape[0]))
    out, cache = conv2d_forward(x, w, b, stride, pad, groups)          # no workspace
    d = xp.asarray(rng.standard_normal(out.shape))
    want = conv2d_backward(d, cache)
    ws = {}
    out_ws, cache_ws = conv2d_forward(x, w, b, stride, pad, groups, workspace=ws)
    np.testing.assert_array_equal(to_numpy(out_ws), to_numpy(out))
    # Another conv overwrites the shared buffer: the backward must redo the im2col.
    other = xp.asarray(rng.standard_normal((2, 3, 12, 12)))
    conv2d_forward(other, xp.asarray(rng.standard_normal((4, 3, 3, 3))), None, 1, 1, 1,
                   workspace=ws)
    got = conv2d_backward(d, cache_ws)
    for a, e in zip(got, want):
        _close(a, e)
    # The buffer now holds column gradients; a second backward redoes the im2col too.
    again = conv2d_backward(d, cache_ws)
    for a, e in zip(again, want):
        _close(a, e)
    # Same buffer, no other call in between: the columns are used as they are.
    _, cache_ws = conv2d_forward(x, w, b, stride, pad, groups, workspace=ws)
    for a, e in zip(conv2d_backward(d, cache_ws), want):
        _close(a, e)


def test_conv_need_dx_false_returns_none_and_same_dw_db(xp, rng):
    x = xp.asarray(rng.standard_normal((3, 3, 15, 15)))
    w = xp.asarray(rng.standard_normal((4, 3, 5, 5)))
    b = xp.asarray(rng.standard_normal(4))
    out, cache = conv2d_forward(x, w, b, 2, 1)
    d = xp.asarray(rng.standard_normal(out.shape))
    _, dw, db = conv2d_backward(d, cache)
    dx0, dw0, db0 = conv2d_backward(d, cache, need_dx=False)
    assert dx0 is None
    _close(dw0, dw)
    _close(db0, db)


def test_alexnet_backward_without_input_grad():
    net = AlexNet("tiny", init="he", dropout=0.0)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    y = np.array([1, 2, 3])
    _, d = softmax_cross_entropy(net.forward(x), y)
    dx = net.backward(d)
    assert dx.shape == x.shape
    want = {k: v.copy() for k, v in net.grads.items()}
    _, d = softmax_cross_entropy(net.forward(x), y)
    assert net.backward(d, input_grad=False) is None
    for k, v in net.grads.items():
        np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-7)


def test_alexnet_conv_layers_share_one_workspace():
    net = AlexNet("tiny")
    spaces = {id(l.workspace) for _, l in net.layers if hasattr(l, "workspace")}
    assert len(spaces) == 1


# ------------------------------------------------------------------ pool, LRN, ReLU

@pytest.mark.parametrize("size, stride", [(3, 2), (2, 2), ((3, 2), (2, 1))])
@pytest.mark.parametrize("ties", [False, True])
def test_pool_scatter_masks_naive_and_threads_agree(rng, size, stride, ties):
    x = rng.standard_normal((6, 3, 11, 9))
    if ties:                          # many equal values in a window: the first one wins
        x = np.round(x)
    with parallel.threads(1):
        out1, cache = maxpool2d_forward(x, size, stride)
        d = rng.standard_normal(out1.shape)
        masks = maxpool2d_backward(d, cache, method="masks")
        scatter = maxpool2d_backward(d, cache, method="scatter")
        windows = maxpool2d_backward(d, cache, method="windows")      # CuPy's way
        # CuPy's forward (the readable one), run here on NumPy arrays: the same
        # outputs and argmax
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fast_pool, "forward_applies", lambda xp: False)
            out_w, (argmax_w, *_) = maxpool2d_forward(x, size, stride)
    np.testing.assert_array_equal(out_w, out1)
    np.testing.assert_array_equal(argmax_w, cache[0])
    with parallel.threads(MANY):
        outn, cachen = maxpool2d_forward(x, size, stride)
        threaded = maxpool2d_backward(d, cachen)
    np.testing.assert_array_equal(outn, out1)
    np.testing.assert_array_equal(cachen[0], cache[0])
    naive = maxpool2d_backward_naive(d, x, size, stride)
    for got in (masks, scatter, windows, threaded):
        _close(got, naive)
    with pytest.raises(ValueError, match="method must be"):
        maxpool2d_backward(d, cache, method="fast")


@pytest.mark.parametrize("threads", [1, MANY])
def test_pool_scatter_index_kept_between_calls(rng, monkeypatch, threads):
    # The MaxPool2d layer keeps the scatter's index arrays from call to call. With
    # pieces of one image (a tiny _PIECE) every piece reads its index from the same
    # first rows of the kept array; a new shape (another batch size, another image
    # size) must rebuild them, and the same shape must reuse them.
    monkeypatch.setattr(fast_pool, "_PIECE", 8)
    ws = {}
    for shape in [(5, 3, 11, 9), (5, 3, 11, 9), (2, 3, 11, 9), (4, 2, 7, 13), (5, 3, 11, 9)]:
        x = rng.standard_normal(shape)
        out, cache = maxpool2d_forward(x, 3, 2)
        d = rng.standard_normal(out.shape)
        with parallel.threads(threads):
            before = ws.get("base")
            got = maxpool2d_backward(d, cache, workspace=ws)
        _close(got, maxpool2d_backward_naive(d, x, 3, 2))
        assert ws["base"].shape == out.shape
        if before is not None and before.shape == out.shape:
            assert ws["base"] is before            # reused, not rebuilt


def test_lrn_pieces_and_threads_equal_one_piece(rng, monkeypatch):
    import layers.fast.lrn as lrn
    x = np.abs(rng.standard_normal((6, 9, 5, 4))) * 20
    d = rng.standard_normal(x.shape)
    with parallel.threads(1):
        out1, c1 = lrn_forward(x, alpha=1e-2)
        dx1 = lrn_backward(d, c1)
    monkeypatch.setattr(lrn, "_PIECE", 200)          # one image is 180 elements
    for t in (1, MANY):
        with parallel.threads(t):
            out, c = lrn_forward(x, alpha=1e-2)
            np.testing.assert_array_equal(out, out1)   # elementwise: bit for bit
            np.testing.assert_array_equal(lrn_backward(d, c), dx1)


def test_relu_inplace_and_threads(rng):
    x = rng.standard_normal((4, 6, 5, 7)).astype(np.float32)
    d = rng.standard_normal(x.shape).astype(np.float32)
    with parallel.threads(1):
        want, cache = relu_forward(x)
        dwant = relu_backward(d, cache)
    np.testing.assert_array_equal(want, np.maximum(x, 0))
    with parallel.threads(MANY):
        xi, di = x.copy(), d.copy()
        out, cache = relu_forward(xi, inplace=True)
        assert out is xi
        np.testing.assert_array_equal(out, want)
        dx = relu_backward(di, cache, inplace=True)
        assert dx is di
        np.testing.assert_array_equal(dx, dwant)
    # A non-contiguous input still works (no threads, no flat view).
    xt = x.transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(relu_forward(xt)[0], np.maximum(xt, 0))


@pytest.mark.parametrize("shape_a, shape_b", [((4, 9), (9, 30)), ((30, 9), (9, 4)),
                                              ((5, 5), (5, 5))])
def test_matmul_wide_is_the_product(rng, shape_a, shape_b):
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    got = matmul_wide(a, b)
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, a @ b, rtol=1e-12)


def test_sgd_pieces_equal_the_whole_array_formula(rng, monkeypatch):
    import engine.optim as optim
    monkeypatch.setattr(optim, "_PIECE", 1000)
    w0 = rng.standard_normal((70, 90)).astype(np.float32)
    v0 = rng.standard_normal(w0.shape).astype(np.float32)
    g = rng.standard_normal(w0.shape).astype(np.float32)
    lr, mom, wd = 0.01, 0.9, 5e-4
    t = np.float32
    v_ref = v0 * t(mom) - t(wd * lr) * w0
    v_ref -= t(lr) * g
    w_ref = w0 + v_ref
    for n in (1, MANY):
        w, v = w0.copy(), v0.copy()
        with parallel.threads(n):
            optim._update(w, g, v, lr, mom, wd)
        np.testing.assert_array_equal(v, v_ref)
        np.testing.assert_array_equal(w, w_ref)


@pytest.mark.parametrize("shape", [(3, 5, 7, 7), (2, 4, 13, 11)])
def test_pool_channels_last_equals_channels_first(rng, monkeypatch, shape):
    x = rng.standard_normal(shape)
    x[0, 0, :3, :3] = 1.0                              # a tie: the first maximum must win
    results = []
    for below in (0, 1000):                            # never / always channels-last
        monkeypatch.setattr(fast_pool, "_CHANNELS_LAST_BELOW", below)
        out, cache = maxpool2d_forward(x, 3, 2)
        results.append((out, cache[0]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[1][0].flags.c_contiguous and results[1][1].flags.c_contiguous


@pytest.mark.parametrize("m, k, n", [(3, 4, 5), (128, 300, 200), (300, 200, 128)])
def test_parallel_matmul_is_the_product(rng, m, k, n, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL_MACS", 1000)     # split even small ones
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    with parallel.threads(MANY):
        np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
        big = np.zeros((m + 2, n + 3))
        parallel.matmul(a, b, out=big[1:m + 1, 2:n + 2])       # a block of a larger array
        np.testing.assert_allclose(big[1:m + 1, 2:n + 2], a @ b, rtol=1e-12, atol=1e-12)
        assert not big[0].any() and not big[:, :2].any()


@pytest.mark.parametrize("x_shape, k, stride, pad", [((3, 2, 9, 7), (3, 2), (1, 1), (1, 0)),
                                                     ((2, 3, 23, 23), (11, 11), (4, 4), (0, 0)),
                                                     ((2, 2, 8, 9), (3, 3), (2, 3), (1, 2))])
def test_col2im_batch_last_equals_col2im(xp, rng, x_shape, k, stride, pad):
    from engine.im2col import col2im, col2im_into, conv_output_size
    N, C, H, W = x_shape
    OH = conv_output_size(H, k[0], stride[0], pad[0])
    OW = conv_output_size(W, k[1], stride[1], pad[1])
    cols = rng.standard_normal((C, k[0], k[1], N, OH, OW))
    want = col2im(xp.asarray(cols.reshape(C * k[0] * k[1], -1)), x_shape, k[0], k[1],
                  stride, pad)
    got = xp.empty(x_shape)
    col2im_into(xp.asarray(np.ascontiguousarray(cols.transpose(0, 1, 2, 4, 5, 3))), got,
                stride, pad, batch_last=True)
    _close(got, want)
