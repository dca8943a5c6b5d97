"""SGD against the paper's update rule written out by hand."""
import numpy as np
import pytest

from engine.backend import to_numpy
from engine.optim import SGD


def test_sgd_two_steps_match_paper_update(xp, rng):
    w0 = rng.standard_normal((3, 4))
    b0 = rng.standard_normal(3)
    g1 = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(3)}
    g2 = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(3)}
    params = {"w": xp.asarray(w0.copy()), "b": xp.asarray(b0.copy())}
    w_id = id(params["w"])
    opt = SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    for g in (g1, g2):
        opt.step({k: xp.asarray(v) for k, v in g.items()})
    assert id(params["w"]) == w_id  # updated in place: the model sees the new values
    # The paper (Section 5): v <- 0.9 v - 0.0005 * lr * w - lr * g ; w <- w + v
    for name, w, gs in (("w", w0, (g1, g2)), ("b", b0, (g1, g2))):
        v = np.zeros_like(w)
        w = w.copy()
        for g in gs:
            v = 0.9 * v - 0.0005 * 0.01 * w - 0.01 * g[name]
            w = w + v
        np.testing.assert_allclose(to_numpy(params[name]), w, rtol=1e-12)


def test_sgd_keeps_float32_and_state_roundtrip(xp):
    params = {"w": xp.ones((2, 2), dtype=np.float32)}
    opt = SGD(params, lr=0.1)
    opt.step({"w": xp.ones((2, 2), dtype=np.float32)})
    assert params["w"].dtype == np.float32 and opt.velocity["w"].dtype == np.float32
    state = opt.state_dict()
    params2 = {"w": params["w"].copy()}
    opt2 = SGD(params2, lr=0.5)
    opt2.load_state_dict(state)
    assert opt2.lr == 0.1
    np.testing.assert_array_equal(to_numpy(opt2.velocity["w"]), to_numpy(opt.velocity["w"]))


def test_sgd_bad_input():
    params = {"w": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match="SGD: lr must be positive"):
        SGD(params, lr=0)
    opt = SGD(params)
    with pytest.raises(KeyError, match="missing"):
        opt.step({})
    with pytest.raises(ValueError, match=r"grad w has shape \(3,\)"):
        opt.step({"w": np.ones(3, np.float32)})
