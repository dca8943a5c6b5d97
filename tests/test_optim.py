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
    # float64 gradients used to be rounded into the float32 weights without a word,
    # and integer ones accepted
    for dtype in (np.float64, np.int64):
        with pytest.raises(TypeError, match=rf"grad w has dtype {np.dtype(dtype)}, param has "
                                            r"float32"):
            opt.step({"w": np.ones(2, dtype)})
    assert params["w"].tolist() == [1.0, 1.0]          # nothing was applied


def test_sgd_refuses_host_gradients_for_device_parameters(cp):
    opt = SGD({"w": cp.ones(2, dtype=cp.float32)})
    with pytest.raises(TypeError, match="grad w is a numpy array, param a cupy one"):
        opt.step({"w": np.ones(2, np.float32)})


def _as_views(arrays, xp):
    """The arrays gathered into one buffer, each replaced by the view of its piece."""
    flat = xp.concatenate([a.reshape(-1) for a in arrays.values()])
    views, o = {}, 0
    for k, a in arrays.items():
        views[k] = flat[o:o + a.size].reshape(a.shape)
        o += a.size
    return flat, views


@pytest.mark.parametrize("decay", ["all", "weights only"])
def test_sgd_on_one_flat_buffer_equals_the_update_per_parameter(xp, rng, decay):
    """SGD(flat=...): the formula once over the whole buffer, the same bits as one
    parameter at a time, weight decay filtered per parameter included."""
    shapes = {"conv.w": (4, 3, 2, 2), "conv.b": (4,), "fc.w": (5, 16), "fc.b": (5,)}
    init = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: xp.asarray(rng.standard_normal(s).astype(np.float32))
              for k, s in shapes.items()} for _ in range(3)]
    keep = None if decay == "all" else (lambda name: name.endswith(".w"))
    each = {k: xp.asarray(v.copy()) for k, v in init.items()}
    flat, views = _as_views({k: xp.asarray(v.copy()) for k, v in init.items()}, xp)
    opt_each = SGD(each, lr=0.05, momentum=0.9, weight_decay=5e-3, decay_filter=keep)
    opt_flat = SGD(views, lr=0.05, momentum=0.9, weight_decay=5e-3, decay_filter=keep,
                   flat=flat)
    for g in grads:
        opt_each.step(g)
        opt_flat.step(g)
        opt_each.lr = opt_flat.lr = 0.01             # a drop, as train.py makes them
    for k in shapes:
        np.testing.assert_array_equal(to_numpy(views[k]), to_numpy(each[k]))
        np.testing.assert_array_equal(to_numpy(opt_flat.velocity[k]),
                                      to_numpy(opt_each.velocity[k]))
    assert not np.array_equal(to_numpy(views["fc.w"]), init["fc.w"])   # it did move
    # the velocities are views of one buffer too: a checkpoint's state goes back in place
    state = opt_flat.state_dict()
    flat2, views2 = _as_views({k: xp.asarray(v.copy()) for k, v in init.items()}, xp)
    opt2 = SGD(views2, lr=0.5, flat=flat2)
    opt2.load_state_dict(state)
    for k in shapes:
        np.testing.assert_array_equal(to_numpy(opt2.velocity[k]), to_numpy(state["velocity"][k]))
    np.testing.assert_array_equal(to_numpy(opt2._flat_velocity),
                                  to_numpy(opt_flat._flat_velocity))


def test_sgd_flat_must_hold_the_parameters_as_views(xp, rng):
    params = {"w": xp.asarray(rng.standard_normal((3, 2)).astype(np.float32)),
              "b": xp.asarray(np.zeros(3, np.float32))}
    flat, views = _as_views(params, xp)
    with pytest.raises(ValueError, match=r"SGD: parameter w is not the view of its piece of "
                                         r"flat \(elements 0:6\).*flatten_params"):
        SGD(params, flat=flat)                               # copies, not views
    with pytest.raises(ValueError, match="parameter b is not the view"):
        SGD({"b": views["b"], "w": views["w"]}, flat=flat)   # another order
    with pytest.raises(ValueError, match="SGD: flat holds 9 elements, the parameters 6"):
        SGD({"w": views["w"]}, flat=flat)
    with pytest.raises(ValueError, match="SGD: flat must be a 1-D array"):
        SGD(views, flat=flat.reshape(3, 3))


def test_state_dict_is_a_snapshot_on_the_host(xp):
    # it handed back the live velocities: a "best epoch" state kept in memory went on
    # changing with every later step (on a GPU, device arrays; with flat, views)
    params = {"w": xp.ones(2, dtype=np.float32)}
    opt = SGD(params, lr=0.1)
    g = {"w": xp.ones(2, dtype=np.float32)}
    opt.step(g)
    state = opt.state_dict()
    assert isinstance(state["velocity"]["w"], np.ndarray)
    before = state["velocity"]["w"].copy()
    opt.step(g)
    np.testing.assert_array_equal(state["velocity"]["w"], before)
    assert not np.array_equal(to_numpy(opt.velocity["w"]), before)


def test_load_state_dict_takes_velocities_from_either_device(xp):
    # a state holding CuPy arrays failed with CuPy's implicit-conversion error
    src = SGD({"w": xp.ones(3, dtype=np.float32)}, lr=0.1)
    src.step({"w": xp.full(3, 2.0, dtype=np.float32)})
    live = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
            "velocity": dict(src.velocity)}          # device arrays, as some callers hold
    for dst_xp in {np, xp}:
        dst = SGD({"w": dst_xp.zeros(3, dtype=np.float32)}, lr=0.5)
        dst.load_state_dict(live)
        assert type(dst.velocity["w"]) is type(dst_xp.zeros(1))
        np.testing.assert_array_equal(to_numpy(dst.velocity["w"]),
                                      to_numpy(src.velocity["w"]))


def test_load_state_dict_refuses_missing_velocities_and_bad_hyperparameters():
    opt = SGD({"a": np.ones(2, np.float32), "b": np.ones(2, np.float32)}, lr=0.1)
    good = opt.state_dict()
    with pytest.raises(KeyError, match=r"missing \['b'\]"):
        opt.load_state_dict(dict(good, velocity={"a": np.ones(2, np.float32)}))
    with pytest.raises(ValueError, match="lr must be positive and finite"):
        opt.load_state_dict(dict(good, lr=float("nan")))
    assert opt.lr == 0.1                         # nothing changed by a refused state


@pytest.mark.parametrize("bad", [dict(lr=float("nan")), dict(lr=float("inf")),
                                 dict(weight_decay=float("nan")),
                                 dict(weight_decay=float("inf"))])
def test_sgd_refuses_nan_and_inf_hyperparameters(bad):
    with pytest.raises(ValueError, match=f"SGD: {next(iter(bad))} must be"):
        SGD({"w": np.ones(2, np.float32)}, **bad)
