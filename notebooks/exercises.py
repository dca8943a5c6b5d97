"""The checks of the notebooks' exercises.

An exercise is a function stub in a notebook cell tagged ``exercise``: you write its
body. The next cell, tagged ``check``, hands your function to one of the checks
below, for example ``check_conv_forward(my_conv_forward)``. A check draws random
inputs, compares what your function returns with the project's own op (``layers/``,
``engine/``, ``data/``), runs a gradient check where there is a backward, and prints
one line:

    PASS my_conv_forward: max error 4.4e-16
    FAIL my_conv_forward: largest difference 1.3e+00 at index (0, 2, 1, 0) of out
    not written yet: my_conv_forward

A stub raises ``NotImplementedError`` until you replace that line ("not written
yet"). The error is relative to the size of the expected values, in float64:
``max |yours - ours| / max(1, max |ours|)``. A right answer gives about 1e-16 and
passes below ``TOL``; a gradient check passes below ``GRAD_TOL`` (engine/gradcheck.py).

The reference solutions are in ``notebooks/solutions/``, one file per notebook and one
function per exercise, named as the stub (``reference(notebook, name)`` loads one).
This module imports only the project's engine/, layers/, alexnet and data/.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from engine.gradcheck import numerical_gradient, rel_error
from layers.activations import relu_backward, relu_forward, tanh_backward, tanh_forward
from layers.conv import conv2d_backward, conv2d_forward
from layers.dropout import dropout_backward, dropout_forward, keep_mask
from layers.linear import linear_backward, linear_forward
from layers.loss import softmax, softmax_cross_entropy
from layers.lrn import lrn_backward, lrn_forward
from layers.pool import maxpool2d_backward, maxpool2d_forward

TOL = 1e-7           # against the project's op, both in float64
GRAD_TOL = 1e-5      # against centered differences, as engine/gradcheck.py
GRAD_ENTRIES = 25    # entries per array a check's gradient check looks at
SOLUTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "solutions")


class Mismatch(Exception):
    """What a check found wrong, in one line."""


# ----------------------------------------------------------------- the machinery
def _report(name, run):
    """Run one check; print its one line. ``run()`` returns the largest error, or a
    pair (largest error, gradient check's relative error)."""
    try:
        errors = run()
    except NotImplementedError:
        print(f"not written yet: {name}")
        return
    except Mismatch as e:
        print(f"FAIL {name}: {e}")
        return
    except Exception as e:                          # noqa: BLE001 -- the learner's code raised
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"FAIL {name}: it raised {type(e).__name__}: {first}")
        return
    err, grad = errors if isinstance(errors, tuple) else (errors, None)
    print(f"PASS {name}: max error {err:.1e}"
          + ("" if grad is None else f" (gradient check: relative error {grad:.1e})"))


def compare(what, mine, expected, tol=TOL):
    """The relative error of ``mine`` against ``expected``; Mismatch if over ``tol``,
    naming the index of the largest difference."""
    if mine is None:
        raise Mismatch(f"{what} is None: return it")
    mine, expected = np.asarray(mine, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if mine.shape != expected.shape:
        raise Mismatch(f"{what} has shape {mine.shape}, expected {expected.shape}")
    if mine.size == 0:
        return 0.0
    diff = np.abs(mine - expected)
    diff = np.where(np.isnan(diff), np.inf, diff)      # NaN is as wrong as it gets
    err = float(diff.max() / max(1.0, float(np.abs(expected).max())))
    if not err <= tol:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        raise Mismatch(f"largest difference {float(diff.max()):.1e} at index "
                       f"{index if len(index) > 1 else index[0]} of {what}")
    return err


def gradient_check(what, loss, x, analytic, seed=0):
    """The worst relative error between ``analytic`` and the centered differences of
    the scalar ``loss()`` with respect to ``x`` (perturbed in place), over a few
    random entries; Mismatch above GRAD_TOL."""
    analytic = np.asarray(analytic, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(x.size, size=min(GRAD_ENTRIES, x.size), replace=False))
    numeric = numerical_gradient(loss, x, idx)
    err = rel_error(analytic[idx], numeric)
    if not err <= GRAD_TOL:
        worst = np.abs(analytic[idx] - numeric) / np.maximum(
            1e-8, np.abs(analytic[idx]) + np.abs(numeric))
        index = np.unravel_index(int(idx[int(np.argmax(worst))]), x.shape)
        raise Mismatch(f"gradient check of {what}: relative error {err:.1e} at index "
                       f"{tuple(int(i) for i in index)}")
    return err


def dot_loss(forward, dout, *args, **kwargs):
    """The scalar sum(forward(*args, **kwargs)[0] * dout), as a function of no arguments
    that reads the arrays in ``args`` each time (a gradient check perturbs them)."""
    return lambda: float((forward(*args, **kwargs)[0] * dout).sum())


def _as_tuple(value, n, what):
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise Mismatch(f"return {n} arrays {what}, as a tuple")
    return tuple(value)


def is_written(fn, *args) -> bool:
    """False when ``fn(*args)`` raises NotImplementedError (a stub), True otherwise."""
    try:
        fn(*args)
    except NotImplementedError:
        return False
    except Exception:                                # noqa: BLE001 -- written, if wrong
        return True
    return True


def reference(notebook: str, name: str):
    """The reference solution ``name`` of ``notebook`` (e.g. '12_fully_connected_and_
    backprop', 'my_linear_backward'), from notebooks/solutions/NOTEBOOK.py."""
    path = os.path.join(SOLUTIONS, notebook + ".py")
    spec = importlib.util.spec_from_file_location(f"solutions_{notebook}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------- 01: convolution
CONV_CASES = [((2, 3, 7, 7), (4, 3, 3, 3), 2, 1),       # x, w shapes, stride, pad
              ((2, 2, 8, 7), (3, 2, 5, 3), 1, 0),
              ((1, 3, 23, 23), (2, 3, 11, 11), 4, 0)]   # conv1's geometry, smaller


def check_conv_forward(fn):
    """fn(x, w, b, stride, pad) -> out (N, F, OH, OW), against conv2d_forward."""
    def run():
        rng, err = _rng(1), 0.0
        for xs, ws, s, p in CONV_CASES:
            x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
            expected, _ = conv2d_forward(x, w, b, stride=s, pad=p)
            err = max(err, compare("out", fn(x.copy(), w.copy(), b.copy(), s, p), expected))
        return err
    _report("my_conv_forward", run)


def check_conv_backward(fn):
    """fn(dout, x, w, stride, pad) -> (dx, dw, db), against conv2d_backward, and a
    gradient check of each."""
    def run():
        rng, err, grad = _rng(2), 0.0, 0.0
        for xs, ws, s, p in CONV_CASES:
            x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
            out, cache = conv2d_forward(x, w, b, stride=s, pad=p)
            dout = rng.standard_normal(out.shape)
            expected = conv2d_backward(dout.copy(), cache)
            mine = _as_tuple(fn(dout.copy(), x.copy(), w.copy(), s, p), 3, "(dx, dw, db)")
            for what, m, e in zip(("dx", "dw", "db"), mine, expected):
                err = max(err, compare(what, m, e))
            loss = dot_loss(conv2d_forward, dout, x, w, b, stride=s, pad=p)
            for what, arr, m in zip(("dx", "dw", "db"), (x, w, b), mine):
                grad = max(grad, gradient_check(what, loss, arr, m))
        return err, grad
    _report("my_conv_backward", run)


# ----------------------------------------------------------------- 02: activations, loss
def _away_from_kink(rng, shape, margin=0.05):
    x = rng.standard_normal(shape)
    return x + margin * np.sign(x)


def check_relu_backward(fn):
    """fn(dout, x) -> dx, against relu_backward, and a gradient check."""
    def run():
        rng = _rng(3)
        x = _away_from_kink(rng, (4, 3, 5, 5))
        dout = rng.standard_normal(x.shape)
        mine = fn(dout.copy(), x.copy())
        err = compare("dx", mine, relu_backward(dout.copy(), relu_forward(x)[1]))
        loss = dot_loss(relu_forward, dout, x)
        return err, gradient_check("dx", loss, x, mine)
    _report("my_relu_backward", run)


def check_tanh_backward(fn):
    """fn(dout, out) -> dx with out = tanh(x), against tanh_backward, and a gradient
    check."""
    def run():
        rng = _rng(4)
        x = 2 * rng.standard_normal((4, 3, 5, 5))
        out, cache = tanh_forward(x)
        dout = rng.standard_normal(x.shape)
        mine = fn(dout.copy(), out.copy())
        err = compare("dx", mine, tanh_backward(dout.copy(), cache))
        loss = dot_loss(tanh_forward, dout, x)
        return err, gradient_check("dx", loss, x, mine)
    _report("my_tanh_backward", run)


def check_softmax_cross_entropy(fn):
    """fn(logits, labels) -> (loss, dlogits), against softmax_cross_entropy, on small
    logits, on logits of 1e4 (where the formula as written overflows) and on a label
    of probability e^-120, and a gradient check."""
    def run():
        rng, err, first = _rng(5), 0.0, None
        labels = rng.integers(0, 5, size=6)
        cases = [rng.standard_normal((6, 5)), 1e4 * rng.standard_normal((6, 5)),
                 np.tile([0.0, -120.0, 0.0, 0.0, 0.0], (6, 1))]
        labels_of = [labels, labels, np.ones(6, dtype=np.int64)]
        for logits, y in zip(cases, labels_of):
            loss, dlogits = softmax_cross_entropy(logits, y)
            mine = _as_tuple(fn(logits.copy(), y.copy()), 2, "(loss, dlogits)")
            err = max(err, compare("loss", mine[0], loss), compare("dlogits", mine[1], dlogits))
            first = mine[1] if first is None else first
        logits = cases[0]
        loss = dot_loss(softmax_cross_entropy, 1.0, logits, labels)
        return err, gradient_check("dlogits", loss, logits, first)
    _report("my_softmax_cross_entropy", run)


# ----------------------------------------------------------------- 03: LRN
LRN_CASES = [(40.0, {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}),  # input scale, constants
             (1.0, {"size": 5, "alpha": 1.0, "beta": 0.75, "k": 2.0}),    # cross-channel term large
             (1.0, {"size": 3, "alpha": 0.5, "beta": 0.5, "k": 1.0})]


def check_lrn_forward(fn):
    """fn(x, size, alpha, beta, k) -> out, against lrn_forward."""
    def run():
        rng, err = _rng(6), 0.0
        for scale, c in LRN_CASES:
            x = scale * rng.standard_normal((2, 7, 3, 4))
            err = max(err, compare("out", fn(x.copy(), c["size"], c["alpha"], c["beta"], c["k"]),
                                   lrn_forward(x, **c)[0]))
        return err
    _report("my_lrn_forward", run)


def check_lrn_backward(fn):
    """fn(dout, x, size, alpha, beta, k) -> dx, against lrn_backward, and a gradient
    check."""
    def run():
        rng, err, grad = _rng(7), 0.0, 0.0
        for scale, c in LRN_CASES:
            x = scale * rng.standard_normal((2, 7, 3, 4))
            out, cache = lrn_forward(x, **c)
            dout = rng.standard_normal(out.shape)
            mine = fn(dout.copy(), x.copy(), c["size"], c["alpha"], c["beta"], c["k"])
            err = max(err, compare("dx", mine, lrn_backward(dout.copy(), cache)))
            loss = dot_loss(lrn_forward, dout, x, **c)
            grad = max(grad, gradient_check("dx", loss, x, mine))
        return err, grad
    _report("my_lrn_backward", run)


# ----------------------------------------------------------------- 04: max-pooling
def tie_free(rng, shape):
    """Every value at least 1e-3 from every other (no ties within a window)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 1e-3 + rng.standard_normal()


def _pool_inputs(rng):
    """(x, size, stride): overlapping 3x3/2 windows, a peak that wins all four of its
    windows, and non-overlapping 2x2/2."""
    peak = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5) / 100
    peak[0, 0, 2, 2] = 1.0
    return [(tie_free(rng, (2, 3, 9, 9)), 3, 2), (peak, 3, 2), (tie_free(rng, (2, 2, 8, 6)), 2, 2),
            (tie_free(rng, (1, 2, 11, 10)), 3, 2)]


def check_maxpool_forward(fn):
    """fn(x, size, stride) -> out, against maxpool2d_forward."""
    def run():
        err = 0.0
        for x, z, s in _pool_inputs(_rng(8)):
            err = max(err, compare("out", fn(x.copy(), z, s), maxpool2d_forward(x, z, s)[0]))
        return err
    _report("my_maxpool_forward", run)


def check_maxpool_backward(fn):
    """fn(dout, x, size, stride) -> dx, against maxpool2d_backward (where windows
    overlap, a pixel's gradient is the sum over the windows it wins), and a gradient
    check."""
    def run():
        rng, err, grad = _rng(9), 0.0, 0.0
        for x, z, s in _pool_inputs(rng):
            out, cache = maxpool2d_forward(x, z, s)
            dout = rng.standard_normal(out.shape)
            mine = fn(dout.copy(), x.copy(), z, s)
            err = max(err, compare("dx", mine, maxpool2d_backward(dout.copy(), cache)))
            loss = dot_loss(maxpool2d_forward, dout, x, z, s)
            grad = max(grad, gradient_check("dx", loss, x, mine))
        return err, grad
    _report("my_maxpool_backward", run)


# ----------------------------------------------------------------- 05: dropout
def _check_dropout(fn, mode, name):
    def run():
        rng, err = _rng(10), 0.0
        for p in (0.5, 0.3):
            x = rng.standard_normal((6, 40))
            keep = keep_mask(x.shape, p, [11, 0], np)
            for train in (True, False):
                expected, _ = dropout_forward(x, p, train=train, mode=mode, seed=[11, 0])
                err = max(err, compare(f"out ({'training' if train else 'test'}, p={p})",
                                       fn(x.copy(), keep.copy(), p, train), expected))
        return err
    _report(name, run)


def check_dropout_paper(fn):
    """fn(x, keep, p, train) -> out, the paper's form, against dropout_forward with
    the same mask (``keep``: True where a unit is kept)."""
    _check_dropout(fn, "paper", "my_dropout_paper")


def check_dropout_inverted(fn):
    """fn(x, keep, p, train) -> out, inverted dropout, against dropout_forward."""
    _check_dropout(fn, "inverted", "my_dropout_inverted")


# ----------------------------------------------------------------- 07: ten crops
def check_ten_crops(fn):
    """fn(x, crop) -> (10, N, C, crop, crop) in data.augment.TEN_CROP_ORDER, against
    data.augment.ten_crops."""
    from data.augment import ten_crops

    def run():
        rng, err = _rng(12), 0.0
        for shape, crop in [((2, 1, 8, 8), 5), ((3, 3, 9, 12), 7), ((1, 2, 6, 6), 6)]:
            x = rng.standard_normal(shape)
            err = max(err, compare("crops", fn(x.copy(), crop), ten_crops(x, crop)))
        return err
    _report("my_ten_crops", run)


def check_ten_crop_average(fn):
    """fn(logits) -> probabilities (N, K), the mean over the crops of each crop's
    softmax; logits (10, N, K)."""
    def run():
        rng, err = _rng(13), 0.0
        for scale in (1.0, 5.0, 100.0):
            logits = scale * rng.standard_normal((10, 4, 7))
            expected = np.mean([softmax(z) for z in logits], axis=0)
            err = max(err, compare("probabilities", fn(logits.copy()), expected))
        return err
    _report("my_ten_crop_average", run)


# ----------------------------------------------------------------- 11: SGD, init
def check_sgd_step(fn):
    """fn(w, g, v, lr, momentum, weight_decay) -> (w, v) after one step, against
    engine.optim.SGD over five steps."""
    from engine.optim import SGD

    def run():
        rng, err = _rng(14), 0.0
        for lr, mu, wd in [(0.01, 0.9, 5e-4), (0.1, 0.5, 0.01), (0.05, 0.0, 0.0)]:
            w0 = rng.standard_normal((3, 4))
            params = {"w": w0.copy()}
            opt = SGD(params, lr=lr, momentum=mu, weight_decay=wd)
            w, v = w0.copy(), np.zeros_like(w0)
            for t in range(5):
                g = rng.standard_normal(w0.shape)
                w, v = _as_tuple(fn(w.copy(), g.copy(), v.copy(), lr, mu, wd), 2, "(w, v)")
                opt.step({"w": g})
                err = max(err, compare(f"w after step {t + 1} (lr {lr}, momentum {mu}, "
                                       f"weight decay {wd})", w, params["w"]),
                          compare(f"v after step {t + 1}", v, opt.velocity["w"]))
        return err
    _report("my_sgd_step", run)


def check_he_std(fn):
    """fn(weight_shape) -> He's standard deviation sqrt(2 / fan_in), for every weight
    of AlexNet('paper') and AlexNet('mini') (conv weights (F, C/groups, KH, KW), fc
    weights (out, in))."""
    from alexnet import AlexNet

    def run():
        err = 0.0
        for preset in ("paper", "mini"):
            for name, w in AlexNet(preset).params.items():
                if name.endswith(".w"):
                    fan_in = int(np.prod(w.shape[1:]))
                    err = max(err, compare(f"{preset} {name}", fn(tuple(w.shape)),
                                           np.sqrt(2.0 / fan_in)))
        return err
    _report("my_he_std", run)


# ----------------------------------------------------------------- 12: fc and backprop
def check_linear_backward(fn):
    """fn(dout, x, w) -> (dx, dw, db), against linear_backward, and a gradient check."""
    def run():
        rng, err, grad = _rng(15), 0.0, 0.0
        for n, d_in, d_out in [(4, 6, 3), (1, 5, 7), (8, 10, 10)]:
            x, w = rng.standard_normal((n, d_in)), rng.standard_normal((d_out, d_in))
            b = rng.standard_normal(d_out)
            out, cache = linear_forward(x, w, b)
            dout = rng.standard_normal(out.shape)
            mine = _as_tuple(fn(dout.copy(), x.copy(), w.copy()), 3, "(dx, dw, db)")
            for what, m, e in zip(("dx", "dw", "db"), mine, linear_backward(dout.copy(), cache)):
                err = max(err, compare(what, m, e))
            loss = dot_loss(linear_forward, dout, x, w, b)
            for what, arr, m in zip(("dx", "dw", "db"), (x, w, b), mine):
                grad = max(grad, gradient_check(what, loss, arr, m))
        return err, grad
    _report("my_linear_backward", run)


HEAD_GRADS = ["fc8.w", "fc8.b", "fc7.w", "fc7.b", "fc6.w", "fc6.b", "x"]


def head_forward(x, params, p=0.5, seed=0):
    """AlexNet's classifier, fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8,
    with the project's ops; dropout is inverted, its masks fixed by ``seed``.

    Returns (logits, acts): acts holds every array of the way, by name:
    x, z6 = fc6(x), h6 = relu(z6), m6 (the dropout mask, 0 or 1/(1-p)), a6 = h6 * m6,
    z7, h7, m7, a7 likewise, and logits = fc8(a7).
    """
    acts = {"x": x}
    a = x
    for i in (6, 7):
        acts[f"z{i}"], _ = linear_forward(a, params[f"fc{i}.w"], params[f"fc{i}.b"])
        acts[f"h{i}"], _ = relu_forward(acts[f"z{i}"])
        acts[f"a{i}"], (_, mask) = dropout_forward(acts[f"h{i}"], p, seed=[seed, i])
        acts[f"m{i}"] = mask
        a = acts[f"a{i}"]
    logits, _ = linear_forward(a, params["fc8.w"], params["fc8.b"])
    return logits, acts


def _head_grads(dlogits, params, x, p, seed):
    """The project's chain: each op's forward with its cache, then each backward."""
    caches, a = {}, x
    for i in (6, 7):
        z, caches[f"fc{i}"] = linear_forward(a, params[f"fc{i}.w"], params[f"fc{i}.b"])
        h, caches[f"relu{i}"] = relu_forward(z)
        a, caches[f"drop{i}"] = dropout_forward(h, p, seed=[seed, i])
    _, caches["fc8"] = linear_forward(a, params["fc8.w"], params["fc8.b"])
    grads = {}
    d, grads["fc8.w"], grads["fc8.b"] = linear_backward(dlogits, caches["fc8"])
    for i in (7, 6):
        d = dropout_backward(d, caches[f"drop{i}"])
        d = relu_backward(d, caches[f"relu{i}"])
        d, grads[f"fc{i}.w"], grads[f"fc{i}.b"] = linear_backward(d, caches[f"fc{i}"])
    grads["x"] = d
    return grads


def head_params(rng, d_in=12, width=10, classes=5):
    """Random float64 parameters for head_forward (biases of 0.1 keep most ReLUs on)."""
    shapes = {"fc6": (width, d_in), "fc7": (width, width), "fc8": (classes, width)}
    params = {}
    for name, shape in shapes.items():
        params[name + ".w"] = rng.standard_normal(shape) * np.sqrt(2.0 / shape[1])
        params[name + ".b"] = np.full(shape[0], 0.1)
    return params


def check_head_backward(fn):
    """fn(dlogits, params, acts) -> dict of gradients with the keys HEAD_GRADS,
    against the project's ops chained, and a gradient check of the whole head."""
    def run():
        rng = _rng(16)
        params, x = head_params(rng), rng.standard_normal((6, 12))
        labels = rng.integers(0, 5, size=6)
        logits, acts = head_forward(x, params)
        _, dlogits = softmax_cross_entropy(logits, labels)
        mine = fn(dlogits.copy(), {k: v.copy() for k, v in params.items()},
                  {k: v.copy() for k, v in acts.items()})
        if not isinstance(mine, dict):
            raise Mismatch("return a dict of gradients, keyed " + ", ".join(HEAD_GRADS))
        expected, err, agree = _head_grads(dlogits, params, x, 0.5, 0), 0.0, []
        for key in HEAD_GRADS:
            if key not in mine:
                raise Mismatch(f"no gradient '{key}' in the dict"
                               + (f" ({', '.join(agree)} agree)" if agree else ""))
            try:
                err = max(err, compare(key, mine[key], expected[key]))
            except Mismatch as e:
                raise Mismatch(f"{e}" + (f" ({', '.join(agree)} agree)" if agree else "")) from None
            agree.append(key)
        arrays = dict(params, x=x)
        def loss():
            return float(softmax_cross_entropy(head_forward(x, params)[0], labels)[0])
        grad = max(gradient_check(key, loss, arrays[key], mine[key]) for key in HEAD_GRADS)
        return err, grad
    _report("my_head_backward", run)


def swap_linear_backward(model, backward):
    """Make every fully connected layer of ``model`` (an AlexNet) call
    ``backward(dout, x, w) -> (dx, dw, db)`` in its backward pass: one call puts your
    op into the network. Returns the names of the layers changed."""
    changed = []
    for name, layer in model.layers:
        if type(layer).__name__ != "Linear":
            continue

        def learner_backward(dout, layer=layer):
            layer._check_backward()
            x, w, _ = layer.cache
            dx, dw, db = backward(dout, x, w)
            # the optimizer wants each gradient in its parameter's dtype
            layer.grads["w"] = np.asarray(dw, dtype=w.dtype)
            layer.grads["b"] = np.asarray(db, dtype=w.dtype)
            layer.cache = None
            return np.asarray(dx, dtype=w.dtype)

        layer.backward = learner_backward
        changed.append(name)
    return changed


__all__ = [n for n in dir() if n.startswith(("check_", "head_", "swap_"))] + [
    "is_written", "reference", "compare", "gradient_check", "Mismatch", "TOL", "GRAD_TOL"]
