"""Tests for im2col/col2im (engine/im2col.py) and the convolution (layers/conv.py).

Each test states a property that could fail: the output-size formula, agreement
with a naive-loop reference, dtype preservation, the adjoint identity of col2im,
centered-difference gradients, the meaning of groups, and loud bad-input errors.
"""
import numpy as np
import pytest

from engine.backend import to_numpy
from engine.gradcheck import check_op
from engine.im2col import col2im, conv_output_size, im2col
from layers.conv import conv2d_backward, conv2d_forward, conv2d_forward_naive


def _inputs(xp, rng, x_shape, w_shape, dtype=np.float64, bias=True):
    x = xp.asarray(rng.standard_normal(x_shape).astype(dtype))
    w = xp.asarray(rng.standard_normal(w_shape).astype(dtype))
    b = xp.asarray(rng.standard_normal(w_shape[0]).astype(dtype)) if bias else None
    return x, w, b


# (x shape, w shape, stride, pad, groups), non-square wherever it can be.
CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 2), 1, 0, 1),
    ((2, 4, 9, 7), (6, 2, 3, 3), 2, 1, 2),              # the brief's main case
    ((1, 4, 8, 11), (4, 2, 2, 3), (2, 3), (1, 2), 2),   # non-square stride and pad
    ((3, 2, 6, 5), (3, 2, 5, 4), (1, 2), (2, 0), 1),
    ((2, 3, 12, 12), (5, 3, 11, 11), 4, 0, 1),           # conv1's kernel/stride, small
]


# ----------------------------------------------------------------- output shape

@pytest.mark.parametrize("x_shape, w_shape, stride, pad, groups, expected", [
    ((2, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1, (2, 96, 55, 55)),     # AlexNet conv1
    ((2, 96, 27, 27), (256, 48, 5, 5), 1, 2, 2, (2, 256, 27, 27)),     # conv2
    ((1, 2, 7, 10), (3, 2, 3, 4), (2, 3), (1, 0), 1, (1, 3, 4, 3)),
    ((1, 2, 8, 5), (4, 1, 1, 5), (3, 1), (0, 2), 2, (1, 4, 3, 5)),
    ((1, 1, 6, 6), (1, 1, 6, 6), 1, 0, 1, (1, 1, 1, 1)),               # kernel == input
])
def test_output_shape_formula(xp, rng, x_shape, w_shape, stride, pad, groups, expected):
    x, w, b = _inputs(xp, rng, x_shape, w_shape, np.float32)
    out, _ = conv2d_forward(x, w, b, stride=stride, pad=pad, groups=groups)
    assert out.shape == expected
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    ph, pw = pad if isinstance(pad, tuple) else (pad, pad)
    H, W, KH, KW = x_shape[2], x_shape[3], w_shape[2], w_shape[3]
    assert expected[2:] == ((H + 2 * ph - KH) // sh + 1, (W + 2 * pw - KW) // sw + 1)
    assert (conv_output_size(H, KH, sh, ph), conv_output_size(W, KW, sw, pw)) == expected[2:]
    assert isinstance(conv_output_size(227, 11, 4, 0), int)


def test_im2col_shape(xp, rng):
    x = xp.asarray(rng.standard_normal((2, 3, 7, 9)))
    cols = im2col(x, 3, 2, stride=(2, 1), pad=(1, 0))
    OH, OW = (7 + 2 - 3) // 2 + 1, (9 - 2) // 1 + 1
    assert cols.shape == (3 * 3 * 2, 2 * OH * OW)


# ------------------------------------------------------ forward against reference

@pytest.mark.parametrize("x_shape, w_shape, stride, pad, groups", CASES)
def test_forward_matches_naive(xp, rng, x_shape, w_shape, stride, pad, groups):
    x, w, b = _inputs(xp, rng, x_shape, w_shape)
    out, _ = conv2d_forward(x, w, b, stride, pad, groups)
    ref = conv2d_forward_naive(x, w, b, stride, pad, groups)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=1e-10, atol=1e-10)


def test_naive_matches_hand_computed_value(rng):
    # One output entry straight from the formula, to pin the reference itself.
    x, w, b = _inputs(np, rng, (1, 4, 5, 6), (4, 2, 3, 2))
    out = conv2d_forward_naive(x, w, b, stride=(2, 1), pad=(1, 0), groups=2)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    f, oh, ow = 3, 1, 2                       # filter 3 is in group 1: channels 2, 3
    want = b[f] + sum(w[f, c, i, j] * xpad[0, 2 + c, oh * 2 + i, ow + j]
                      for c in range(2) for i in range(3) for j in range(2))
    assert abs(out[0, f, oh, ow] - want) < 1e-12


def test_no_bias_equals_zero_bias(xp, rng):
    x, w, _ = _inputs(xp, rng, (2, 4, 6, 5), (4, 2, 3, 3), bias=False)
    out0, cache = conv2d_forward(x, w, None, 1, 1, 2)
    out1, _ = conv2d_forward(x, w, xp.zeros(4), 1, 1, 2)
    np.testing.assert_allclose(to_numpy(out0), to_numpy(out1), rtol=0, atol=0)
    dx, dw, db = conv2d_backward(xp.ones_like(out0), cache)
    assert db is None and dx.shape == x.shape and dw.shape == w.shape


# ----------------------------------------------------------------------- dtypes

def test_float32_stays_float32(xp, rng):
    x, w, b = _inputs(xp, rng, (2, 4, 9, 7), (6, 2, 3, 3), np.float32)
    out, cache = conv2d_forward(x, w, b, stride=2, pad=1, groups=2)
    assert out.dtype == np.float32
    dx, dw, db = conv2d_backward(xp.ones_like(out), cache)
    assert (dx.dtype, dw.dtype, db.dtype) == (np.float32,) * 3
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)
    cols = im2col(x, 3, 3, (2, 2), (1, 1))
    assert cols.dtype == np.float32
    assert col2im(cols, x.shape, 3, 3, (2, 2), (1, 1)).dtype == np.float32
    # float32 results agree with float64 ones to float32 precision.
    ref = conv2d_forward_naive(x.astype(np.float64), w.astype(np.float64),
                               b.astype(np.float64), 2, 1, 2)
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------- col2im is the adjoint

@pytest.mark.parametrize("x_shape, k, stride, pad", [
    ((2, 3, 7, 7), (3, 3), (1, 1), (0, 0)),
    ((2, 3, 7, 9), (3, 2), (2, 1), (1, 0)),
    ((1, 2, 11, 8), (5, 3), (3, 2), (2, 1)),
    ((2, 1, 13, 13), (11, 11), (4, 4), (0, 0)),     # conv1-like: stride 4, 2 phases used
    ((1, 2, 9, 10), (2, 4), (4, 3), (3, 2)),        # stride larger than the kernel
])
def test_col2im_is_adjoint_of_im2col(xp, rng, x_shape, k, stride, pad):
    x = xp.asarray(rng.standard_normal(x_shape))
    cols = im2col(x, k[0], k[1], stride, pad)
    y = xp.asarray(rng.standard_normal(cols.shape))
    back = col2im(y, x_shape, k[0], k[1], stride, pad)
    assert back.shape == x_shape
    lhs = float((cols * y).sum())
    rhs = float((x * back).sum())
    assert abs(lhs - rhs) <= 1e-10 * (abs(lhs) + abs(rhs) + 1.0)


def test_col2im_counts_window_overlaps(xp):
    # col2im of all-ones counts how many windows cover each pixel: a value computed
    # another way, by sliding the kernel footprint over a zero canvas.
    x_shape, (kh, kw), (sh, sw), (ph, pw) = (1, 1, 7, 8), (3, 2), (2, 3), (1, 1)
    OH, OW = conv_output_size(7, kh, sh, ph), conv_output_size(8, kw, sw, pw)
    counts = np.zeros((7 + 2 * ph, 8 + 2 * pw))
    for oh in range(OH):
        for ow in range(OW):
            counts[oh * sh:oh * sh + kh, ow * sw:ow * sw + kw] += 1
    back = col2im(xp.ones((kh * kw, OH * OW)), x_shape, kh, kw, (sh, sw), (ph, pw))
    np.testing.assert_array_equal(to_numpy(back)[0, 0], counts[ph:ph + 7, pw:pw + 8])


# --------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("x_shape, w_shape, stride, pad, groups", [
    ((2, 3, 5, 6), (4, 3, 3, 2), 1, 0, 1),
    ((2, 4, 7, 6), (4, 2, 3, 2), 2, 1, 2),
    ((1, 4, 8, 7), (6, 2, 2, 3), (2, 3), (1, 2), 2),
    ((2, 2, 6, 7), (3, 2, 3, 3), (2, 1), (2, 0), 1),
])
def test_gradients(xp, rng, x_shape, w_shape, stride, pad, groups):
    x, w, b = _inputs(xp, rng, x_shape, w_shape)
    results = check_op("conv2d", conv2d_forward, conv2d_backward, {"x": x, "w": w, "b": b},
                       ["x", "w", "b"],
                       kwargs={"stride": stride, "pad": pad, "groups": groups},
                       max_checks=60)
    assert [r.name for r in results] == ["dx", "dw", "db"]
    for r in results:
        assert r.passed, f"{r.name}: relative error {r.rel_error:.2e}"


# ------------------------------------------------------------------------ groups

def test_groups_equal_two_independent_convs(xp, rng):
    x, w, b = _inputs(xp, rng, (2, 6, 8, 7), (4, 3, 3, 2))
    out, cache = conv2d_forward(x, w, b, stride=(2, 1), pad=1, groups=2)
    lo, _ = conv2d_forward(x[:, :3], w[:2], b[:2], stride=(2, 1), pad=1)
    hi, _ = conv2d_forward(x[:, 3:], w[2:], b[2:], stride=(2, 1), pad=1)
    np.testing.assert_allclose(to_numpy(out), to_numpy(xp.concatenate([lo, hi], axis=1)),
                               rtol=1e-12, atol=1e-12)
    # The gradients split the same way.
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx, dw, db = conv2d_backward(dout, cache)
    _, c_lo = conv2d_forward(x[:, :3], w[:2], b[:2], stride=(2, 1), pad=1)
    _, c_hi = conv2d_forward(x[:, 3:], w[2:], b[2:], stride=(2, 1), pad=1)
    g_lo = conv2d_backward(xp.ascontiguousarray(dout[:, :2]), c_lo)
    g_hi = conv2d_backward(xp.ascontiguousarray(dout[:, 2:]), c_hi)
    for got, axis, lo_g, hi_g in zip((dx, dw, db), (1, 0, 0), g_lo, g_hi):
        np.testing.assert_allclose(to_numpy(got),
                                   to_numpy(xp.concatenate([lo_g, hi_g], axis=axis)),
                                   rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------- bad input

def _bad(name):
    """Valid float64 inputs (x (2,4,6,6), w (6,2,3,3), b (6,), groups 2), then one spoiled."""
    rng = np.random.default_rng(1)
    args = dict(x=rng.standard_normal((2, 4, 6, 6)), w=rng.standard_normal((6, 2, 3, 3)),
                b=rng.standard_normal(6), stride=1, pad=0, groups=2)
    spoil = {
        "x 3-D": dict(x=rng.standard_normal((4, 6, 6))),
        "w 3-D": dict(w=rng.standard_normal((6, 2, 3))),
        "b 2-D": dict(b=rng.standard_normal((6, 1))),
        "channels": dict(x=rng.standard_normal((2, 6, 6, 6))),
        "groups not dividing C": dict(groups=3, w=rng.standard_normal((6, 1, 3, 3))),
        "groups not dividing F": dict(w=rng.standard_normal((5, 2, 3, 3)),
                                      b=rng.standard_normal(5)),
        "kernel too large": dict(w=rng.standard_normal((6, 2, 7, 3))),
        "kernel too large with pad": dict(w=rng.standard_normal((6, 2, 3, 9)), pad=1),
        "integer x": dict(x=np.ones((2, 4, 6, 6), dtype=np.int64)),
        "integer w": dict(w=np.ones((6, 2, 3, 3), dtype=np.int32)),
        "x/w dtypes": dict(w=rng.standard_normal((6, 2, 3, 3)).astype(np.float32)),
        "b dtype": dict(b=rng.standard_normal(6).astype(np.float32)),
        "b shape": dict(b=rng.standard_normal(5)),
        "stride 0": dict(stride=0),
        "stride (1, 0)": dict(stride=(1, 0)),
        "pad -1": dict(pad=-1),
        "pad (0, -2)": dict(pad=(0, -2)),
        "groups 0": dict(groups=0),
    }[name]
    args.update(spoil)
    return args


@pytest.mark.parametrize("name, error", [
    ("x 3-D", ValueError), ("w 3-D", ValueError), ("b 2-D", ValueError),
    ("channels", ValueError), ("groups not dividing C", ValueError),
    ("groups not dividing F", ValueError), ("kernel too large", ValueError),
    ("kernel too large with pad", ValueError),
    ("integer x", TypeError), ("integer w", TypeError),
    ("x/w dtypes", TypeError), ("b dtype", TypeError), ("b shape", ValueError),
    ("stride 0", ValueError), ("stride (1, 0)", ValueError),
    ("pad -1", ValueError), ("pad (0, -2)", ValueError), ("groups 0", ValueError),
])
def test_bad_input_raises(name, error):
    args = _bad(name)
    with pytest.raises(error, match="conv2d_forward") as e:
        conv2d_forward(**args)
    assert type(e.value) is error


def test_bad_input_messages_say_what_was_expected():
    with pytest.raises(ValueError, match=r"x has C=6 channels.*expects w.shape\[1\] \* groups = 4"):
        conv2d_forward(**_bad("channels"))
    with pytest.raises(ValueError, match=r"kernel 7x3 is larger than the padded input 6x6"):
        conv2d_forward(**_bad("kernel too large"))
    with pytest.raises(TypeError, match=r"x is float64, w is float32"):
        conv2d_forward(**_bad("x/w dtypes"))
    with pytest.raises(ValueError, match=r"b must have shape \(6,\).*got \(5,\)"):
        conv2d_forward(**_bad("b shape"))


def test_pad_zero_kernel_equal_to_padded_input_is_fine():
    x = np.ones((1, 1, 4, 4))
    out, _ = conv2d_forward(x, np.ones((1, 1, 6, 6)), None, pad=1)
    assert out.shape == (1, 1, 1, 1) and out[0, 0, 0, 0] == 16.0


@pytest.mark.parametrize("x_shape, k, stride, pad", [
    ((2, 3, 7, 9), (3, 2), (2, 1), (1, 0)),
    ((2, 1, 13, 13), (11, 11), (4, 4), (0, 0)),     # conv1-like
    ((1, 2, 9, 10), (2, 4), (4, 3), (3, 2)),        # stride > kernel, pad > stride
    ((1, 2, 6, 7), (3, 3), (3, 2), (5, 4)),         # padding wider than the image phase
    ((2, 2, 5, 5), (5, 5), (1, 1), (2, 2)),
])
def test_im2col_matches_its_definition(xp, rng, x_shape, k, stride, pad):
    """cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i, ow*sw + j], entry by entry
    (im2col reads stride phases of xpad, so every padding/stride case is checked)."""
    x = rng.standard_normal(x_shape)
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = k, stride, pad
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    xpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xpad[:, :, ph:ph + H, pw:pw + W] = x
    want = np.empty((C, kh, kw, N, OH, OW))
    for c, i, j, n, oh, ow in np.ndindex(*want.shape):
        want[c, i, j, n, oh, ow] = xpad[n, c, oh * sh + i, ow * sw + j]
    got = to_numpy(im2col(xp.asarray(x), kh, kw, stride, pad))
    np.testing.assert_array_equal(got, want.reshape(C * kh * kw, N * OH * OW))


@pytest.mark.parametrize("shape, k, stride, pad", [
    ((2, 3, 7, 9), (3, 3), (1, 1), (1, 1)),
    ((3, 2, 11, 11), (5, 5), (1, 1), (2, 2)),
    ((2, 3, 23, 19), (11, 11), (4, 4), (0, 0)),      # the paper's conv1 geometry
    ((2, 2, 9, 8), (3, 2), (2, 3), (1, 0)),
    ((1, 1, 5, 5), (5, 5), (1, 1), (0, 0)),
])
def test_strided_im2col_and_col2im_match_the_loops(rng, shape, k, stride, pad):
    # CuPy's few-call versions (one strided view of all the windows), run on NumPy,
    # against the loops over kernel offsets that NumPy uses; both column layouts of
    # col2im. Same terms added in the same order: equal to the last bit.
    from engine.fast_im2col import col2im_strided, im2col_strided
    from engine.im2col import col2im_into, im2col_into
    N, C, H, W = shape
    OH = conv_output_size(H, k[0], stride[0], pad[0])
    OW = conv_output_size(W, k[1], stride[1], pad[1])
    x = rng.standard_normal(shape)
    loop, strided = (np.empty((C, k[0], k[1], N, OH, OW)) for _ in range(2))
    im2col_into(x, loop, stride, pad)
    im2col_strided(x, strided, stride, pad)
    np.testing.assert_array_equal(strided, loop)
    cols = rng.standard_normal((C, k[0], k[1], N, OH, OW))
    for batch_last in (False, True):
        c = np.ascontiguousarray(cols.transpose(0, 1, 2, 4, 5, 3)) if batch_last else cols
        dloop, dstrided = np.empty(shape), np.empty(shape)
        col2im_into(c, dloop, stride, pad, batch_last=batch_last)
        col2im_strided(c, dstrided, stride, pad, batch_last=batch_last)
        np.testing.assert_array_equal(dstrided, dloop)


@pytest.mark.parametrize("shape, k, stride, pad", [
    ((2, 3, 7, 9), (3, 3), (1, 1), (1, 1)),
    ((3, 2, 11, 11), (5, 5), (1, 1), (2, 2)),
    ((2, 3, 23, 19), (11, 11), (4, 4), (0, 0)),      # the paper's conv1 geometry
    ((2, 2, 9, 8), (3, 2), (2, 3), (1, 0)),
    ((1, 2, 9, 10), (2, 4), (4, 3), (3, 2)),         # stride > kernel, pad > stride
    ((1, 2, 6, 7), (3, 3), (3, 2), (5, 4)),          # padding wider than the image phase
])
def test_gpu_kernels_im2col_and_col2im_match_the_loops(cp, rng, shape, k, stride, pad):
    # The GPU kernels (ALEXNET_GPU_ROUTES=kernels), called directly whatever the
    # route, against the CPU's loops: im2col exactly, col2im to rounding (each pixel
    # adds its terms in another order), both column layouts, and into views.
    from engine.fast_im2col import col2im_kernel, im2col_kernel
    from engine.im2col import col2im_into, im2col_into
    N, C, H, W = shape
    OH = conv_output_size(H, k[0], stride[0], pad[0])
    OW = conv_output_size(W, k[1], stride[1], pad[1])
    x = rng.standard_normal(shape)
    want = np.empty((C, k[0], k[1], N, OH, OW))
    im2col_into(x, want, stride, pad)
    got = cp.empty((C, k[0], k[1], N + 1, OH, OW))
    im2col_kernel(cp.asarray(x), got[:, :, :, 1:], stride, pad)   # a view: not contiguous
    np.testing.assert_array_equal(to_numpy(got[:, :, :, 1:]), want)
    cols = rng.standard_normal((C, k[0], k[1], N, OH, OW))
    for batch_last in (False, True):
        c = np.ascontiguousarray(cols.transpose(0, 1, 2, 4, 5, 3)) if batch_last else cols
        dloop = np.empty(shape)
        col2im_into(c, dloop, stride, pad, batch_last=batch_last)
        dk = cp.zeros((N, C, H, W + 1))
        col2im_kernel(cp.asarray(c), dk[..., 1:], stride, pad, batch_last=batch_last)
        np.testing.assert_allclose(to_numpy(dk[..., 1:]), dloop, rtol=1e-12, atol=1e-12)
        assert float(abs(dk[..., 0]).max()) == 0.0


def test_layer_objects_take_numpy_integers_and_check_their_sizes():
    from layers.modules import Conv2d, MaxPool2d
    # np.int64 sizes (e.g. read from an array) used to fail with "cannot unpack"
    conv = Conv2d(np.int64(3), 4, np.int64(3), stride=np.int64(2), pad=(1, np.int32(0)))
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.pad == (1, 0)
    assert conv.output_shape((3, 9, 9)) == (4, 5, 4)
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    assert conv.forward(x).shape == (1, 4, 5, 4)
    assert MaxPool2d(np.int64(3), 2).output_shape((4, 5, 4)) == (4, 2, 1)
    assert repr(conv).startswith("Conv2d(3, 4, kernel=3, stride=2, pad=(1, 0)")
    with pytest.raises(ValueError, match="Conv2d: stride must be an integer >= 1, got 0"):
        Conv2d(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match="Conv2d: pad must be an integer >= 0"):
        Conv2d(3, 4, 3, pad=-1)
    with pytest.raises(ValueError, match="Conv2d: groups must be an integer >= 1, got 0"):
        Conv2d(4, 4, 3, groups=0)
    with pytest.raises(ValueError, match="MaxPool2d: size must be an integer >= 1"):
        MaxPool2d(0, 2)
    out, _ = conv2d_forward(x, conv.params["w"], None, stride=np.int64(2), pad=1)
    assert out.shape == (1, 4, 5, 5)


@pytest.mark.parametrize("shape, k, stride, pad", [
    ((2, 3, 23, 19), (11, 11), (4, 4), (0, 0)),      # the paper's conv1 geometry
    ((2, 2, 9, 8), (3, 2), (2, 3), (1, 0)),
    ((1, 2, 9, 10), (2, 4), (4, 3), (3, 2)),         # stride > kernel, pad > stride
    ((1, 2, 6, 7), (3, 3), (3, 2), (5, 4)),          # padding wider than the image phase
])
def test_readable_im2col_and_col2im_equal_the_stride_phase_loops(rng, monkeypatch, shape, k,
                                                                 stride, pad):
    # engine/im2col.py's plain loop over kernel offsets, made to run for strides > 1
    # too, against the CPU's stride phases (engine/fast_im2col.py): the same copies,
    # the same terms added in the same order, so equal to the last bit.
    from engine import fast_im2col
    from engine.im2col import col2im_into, im2col_into
    N, C, H, W = shape
    OH = conv_output_size(H, k[0], stride[0], pad[0])
    OW = conv_output_size(W, k[1], stride[1], pad[1])
    x = rng.standard_normal(shape)
    cols = rng.standard_normal((C, k[0], k[1], N, OH, OW))
    phases, dphases = np.empty((C, k[0], k[1], N, OH, OW)), np.empty(shape)
    fast_im2col.im2col_loops(x, phases, stride, pad)
    fast_im2col.col2im_loops(cols, dphases, stride, pad)
    monkeypatch.setattr(fast_im2col, "applies", lambda xp, stride, batch_last=False: False)
    plain, dplain = np.empty_like(phases), np.empty(shape)
    im2col_into(x, plain, stride, pad)
    col2im_into(cols, dplain, stride, pad)
    np.testing.assert_array_equal(plain, phases)
    np.testing.assert_array_equal(dplain, dphases)


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, groups", CASES)
@pytest.mark.parametrize("workspace", [False, True])
def test_readable_conv_equals_the_threaded_route_on_one_thread(rng, monkeypatch, x_shape,
                                                               w_shape, stride, pad, groups,
                                                               workspace):
    # layers/conv.py's whole-batch code (what CuPy runs without a workspace), made to
    # run on NumPy, against layers/fast/conv.py cut into one piece, with and without
    # the kept im2col buffer: the same calls, so the same numbers to the last bit.
    from engine import parallel
    from layers.fast import conv as fast_conv
    x, w, b = _inputs(np, rng, x_shape, w_shape, np.float32)
    with parallel.threads(1):
        out_fast, cache = conv2d_forward(x, w, b, stride, pad, groups,
                                         workspace={} if workspace else None)
        dout = rng.standard_normal(out_fast.shape).astype(np.float32)
        grads_fast = conv2d_backward(dout, cache)
    monkeypatch.setattr(fast_conv, "applies", lambda xp, workspace: False)
    out, cache = conv2d_forward(x, w, b, stride, pad, groups)
    grads = conv2d_backward(dout, cache)
    np.testing.assert_array_equal(out, out_fast)
    for got, want in zip(grads, grads_fast):
        np.testing.assert_array_equal(got, want)
