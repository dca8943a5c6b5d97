"""The gradient checker itself: it passes correct backwards, catches wrong ones, and
`python gradcheck.py` checks every op and the whole tiny network."""
import subprocess
import sys

import numpy as np
import pytest

from engine.gradcheck import check_op, numerical_gradient, rel_error
from gradcheck import tiny_model_check
from layers.linear import linear_backward, linear_forward
from tests.conftest import ROOT


def test_numerical_gradient_of_known_function():
    x = np.array([1.0, -2.0, 3.0])
    g = numerical_gradient(lambda: float((x ** 3).sum()), x)
    np.testing.assert_allclose(g, 3 * np.array([1.0, 4.0, 9.0]), rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])  # restored after perturbing


def test_numerical_gradient_refuses_a_non_contiguous_input():
    # a transposed view: reshape(-1) would copy it, and the perturbations would not reach x
    x = np.arange(6.0).reshape(2, 3).T
    with pytest.raises(ValueError, match="must be C-contiguous"):
        numerical_gradient(lambda: float((x ** 2).sum()), x)


def test_rel_error_formula():
    assert rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert abs(rel_error(np.array([1.0]), np.array([3.0])) - 0.5) < 1e-15
    assert rel_error(np.array([0.0]), np.array([1e-12])) == 1e-12 / 1e-8  # the 1e-8 floor


def test_check_op_catches_a_wrong_backward(rng):
    def bad_backward(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        return dx, dw * 1.01, db        # a 1% error in dw

    inputs = {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((2, 4)),
              "b": rng.standard_normal(2)}
    res = {r.name: r for r in check_op("linear", linear_forward, bad_backward, inputs,
                                       ["x", "w", "b"])}
    assert res["dx"].passed and res["db"].passed
    assert not res["dw"].passed and res["dw"].rel_error > 1e-3


@pytest.mark.parametrize("seed", [3, 11, 29, 36])
def test_whole_tiny_network_gradients(seed):
    # seeds 11, 29 and 36 failed correct code: entries near 1e-8 judged relative to
    # themselves, where the numerical side's round-off is some 3e-10
    results = tiny_model_check(seed=seed)
    names = {r.name for r in results}
    assert {"conv1.w", "conv5.b", "fc6.w", "fc8.b"} <= names and len(results) == 16
    bad = [(r.name, r.rel_error) for r in results if not r.passed]
    assert not bad, bad


def test_whole_network_check_still_catches_a_one_percent_error(monkeypatch):
    from layers.modules import Conv2d
    real = Conv2d.backward

    def backward(self, dout, need_dx=True):
        dx = real(self, dout, need_dx=need_dx)
        self.grads["w"] *= 1.01
        return dx
    monkeypatch.setattr(Conv2d, "backward", backward)
    res = {r.name: r for r in tiny_model_check(seed=0)}
    for i in range(1, 6):
        assert not res[f"conv{i}.w"].passed and res[f"conv{i}.w"].rel_error > 1e-3
    assert res["fc8.w"].passed


def test_check_op_catches_a_wrong_backward_that_writes_into_dout(rng):
    # the numerical side reused the dout the backward had overwritten, so a wrong
    # in-place backward (ReLU's mask at x >= 1 instead of x > 0) agreed with itself
    def forward(x):
        return np.maximum(x, 0), x

    def backward(dout, x):
        dout[x < 1] = 0
        return dout
    x = np.linspace(-2, 2, 20).reshape(4, 5) + 0.01
    res, = check_op("relu", forward, backward, {"x": x}, ["x"])
    assert not res.passed and res.rel_error > 0.5


def test_rel_error_floor():
    # below the floor an entry is judged by its difference over the floor
    assert rel_error(np.array([1e-8]), np.array([1.3e-8]), floor=1e-4) == \
        pytest.approx(0.3e-8 / 1e-4)
    assert rel_error(np.array([1.0]), np.array([1.01]), floor=1e-4) == \
        pytest.approx(0.01 / 2.01)


def test_gradcheck_command_passes_and_prints_table():
    p = subprocess.run([sys.executable, "gradcheck.py"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for op in ("conv2d", "relu", "tanh", "lrn", "maxpool2d", "dropout", "linear",
               "softmax_cross_entropy", "AlexNet tiny (whole network)"):
        assert op in p.stdout
    assert "FAIL" not in p.stdout
    assert " 0 failed" in p.stdout


def test_gradcheck_command_fails_when_only_matches_nothing():
    # a typo in --only used to print "0 passed, 0 failed" and exit 0
    p = subprocess.run([sys.executable, "gradcheck.py", "--only", "nosuchop"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "--only 'nosuchop' matches no check" in p.stderr and "maxpool2d" in p.stderr
    p = subprocess.run([sys.executable, "gradcheck.py", "--max-checks", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "--max-checks must be >= 1, got 0" in p.stderr


def test_check_loss_wants_float64():
    from engine.gradcheck import check_loss
    from layers.loss import softmax_cross_entropy
    with pytest.raises(TypeError, match="check_loss.*input logits must be float64"):
        check_loss("ce", softmax_cross_entropy, dict(logits=np.zeros((2, 3), np.float32),
                                                     labels=np.array([0, 1])), "logits")
