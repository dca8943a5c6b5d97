"""The gradient checker itself: it passes correct backwards, catches wrong ones, and
`python -m engine.gradcheck` checks every op and the whole tiny network."""
import subprocess
import sys

import numpy as np
import pytest

from engine.gradcheck import check_op, numerical_gradient, rel_error
from engine.gradcheck_suite import tiny_model_check
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


def test_whole_tiny_network_gradients():
    results = tiny_model_check(seed=3)
    names = {r.name for r in results}
    assert {"conv1.w", "conv5.b", "fc6.w", "fc8.b"} <= names and len(results) == 16
    bad = [(r.name, r.rel_error) for r in results if not r.passed]
    assert not bad, bad


def test_gradcheck_command_passes_and_prints_table():
    p = subprocess.run([sys.executable, "-m", "engine.gradcheck"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for op in ("conv2d", "relu", "tanh", "lrn", "maxpool2d", "dropout", "linear",
               "softmax_cross_entropy", "AlexNet tiny (whole network)"):
        assert op in p.stdout
    assert "FAIL" not in p.stdout
    assert " 0 failed" in p.stdout


def test_gradcheck_command_fails_when_only_matches_nothing():
    # a typo in --only used to print "0 passed, 0 failed" and exit 0
    p = subprocess.run([sys.executable, "-m", "engine.gradcheck", "--only", "nosuchop"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "--only 'nosuchop' matches no check" in p.stderr and "maxpool2d" in p.stderr
    p = subprocess.run([sys.executable, "-m", "engine.gradcheck", "--max-checks", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "--max-checks must be >= 1, got 0" in p.stderr


def test_check_loss_wants_float64():
    from engine.gradcheck import check_loss
    from layers.loss import softmax_cross_entropy
    with pytest.raises(TypeError, match="check_loss.*input logits must be float64"):
        check_loss("ce", softmax_cross_entropy, dict(logits=np.zeros((2, 3), np.float32),
                                                     labels=np.array([0, 1])), "logits")
