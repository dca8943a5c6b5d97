"""The AlexNet model: shapes and parameter counts of each preset, the paper's
initialisation, forward/backward plumbing, save/load and devices."""
import numpy as np
import pytest

from alexnet import AlexNet
from engine.backend import to_device, to_numpy
from layers.loss import softmax_cross_entropy


def test_paper_preset_parameter_count_and_shapes():
    net = AlexNet("paper")                    # groups=2: the two-GPU net of Section 3.5
    assert net.num_params() == 60_965_224
    shapes = dict(net.layer_shapes)
    assert shapes["conv1"] == (96, 55, 55) and shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27) and shapes["pool2"] == (256, 13, 13)
    assert shapes["conv5"] == (256, 13, 13) and shapes["pool5"] == (256, 6, 6)
    assert shapes["fc8"] == (1000,)
    assert net.params["conv2.w"].shape == (256, 48, 5, 5)   # each kernel sees 48 of 96 maps
    assert net.params["conv3.w"].shape == (384, 256, 3, 3)  # conv3 sees both halves
    assert net.params["conv4.w"].shape == (384, 192, 3, 3)
    assert net.params["fc6.w"].shape == (4096, 9216)


def test_paper_preset_one_column_and_224_input():
    # groups=1 gives conv2/4/5 twice the input channels per kernel.
    assert AlexNet("paper", groups=1).num_params() == 60_965_224 + 307_200 + 663_552 + 442_368
    # 224 gives 54x54 after conv1, not the paper's 55x55, and a smaller fc6.
    net = AlexNet("paper", input_size=224)
    assert dict(net.layer_shapes)["conv1"] == (96, 54, 54)


def test_mini_and_tiny_presets():
    mini = AlexNet("mini")
    assert mini.num_params() == 4_557_514
    assert dict(mini.layer_shapes)["pool5"] == (256, 2, 2)
    assert AlexNet("mini", input_size=32, in_channels=3).params["fc6.w"].shape == (1024, 2304)
    tiny = AlexNet("tiny")
    assert tiny.num_params() < 200_000
    names = [n for n, _ in mini.layers]
    # conv-ReLU-LRN-pool twice, three convs, pool, three fc with dropout: the paper's order
    assert names[:8] == ["conv1", "relu1", "lrn1", "pool1", "conv2", "relu2", "lrn2", "pool2"]
    assert names[-7:] == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]


def test_summary_columns_line_up_and_sum_to_the_total():
    net = AlexNet("mini", in_channels=1, input_size=28, num_classes=10)
    lines = net.summary().splitlines()
    header, rule = lines[1], lines[2]
    rows = lines[3:3 + len(net.layers)]
    assert lines[3 + len(net.layers)] == rule and set(rule) == {"-"}
    # every row ends where the header ends, and its output shape ends under "output"
    # (even where a description is longer than the default width of the kind column)
    assert {len(r) for r in rows + [lines[-1]]} == {len(header)}
    out_end = header.index("output") + len("output")
    shapes = dict(net.layer_shapes)
    for (name, _), row in zip(net.layers, rows):
        shape = "x".join(str(d) for d in shapes[name])
        assert row[:out_end].endswith(" " + shape), row
    counts = [int(r.split()[-1].replace(",", "")) for r in rows]
    assert sum(counts) == int(lines[-1].split()[-1].replace(",", "")) == net.num_params()


def test_paper_initialisation():
    net = AlexNet("mini", seed=1)
    p = net.params
    for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):
        np.testing.assert_array_equal(p[f"{name}.b"], 1.0)
    for name in ("conv1", "conv3", "fc8"):
        np.testing.assert_array_equal(p[f"{name}.b"], 0.0)
    assert abs(p["fc6.w"].std() - 0.01) < 2e-4 and abs(p["fc6.w"].mean()) < 2e-4
    he = AlexNet("mini", init="he").params
    np.testing.assert_array_equal(he["conv2.b"], np.float32(0.1))
    assert abs(he["conv2.w"].std() - np.sqrt(2 / (64 * 25))) < 1e-3
    # Caffe's bvlc_alexnet: the paper's 0.01 but 0.005 in fc6/fc7, and biases of 0.1
    caffe = AlexNet("mini", init="caffe", seed=1).params
    for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):
        np.testing.assert_array_equal(caffe[f"{name}.b"], np.float32(0.1))
    for name in ("conv1", "conv3", "fc8"):
        np.testing.assert_array_equal(caffe[f"{name}.b"], 0.0)
    assert abs(caffe["fc6.w"].std() - 0.005) < 1e-4 and abs(caffe["fc7.w"].std() - 0.005) < 1e-4
    assert abs(caffe["fc8.w"].std() - 0.01) < 5e-4 and abs(caffe["conv3.w"].std() - 0.01) < 2e-4


def test_forward_backward_keys_shapes_dtype():
    net = AlexNet("tiny", init="he")
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    logits = net.forward(x, train=True)
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    _, d = softmax_cross_entropy(logits, np.array([0, 1, 2, 3]))
    dx = net.backward(d)
    assert dx.shape == x.shape
    assert net.params.keys() == net.grads.keys()
    for k in net.params:
        assert net.grads[k].shape == net.params[k].shape and net.grads[k].dtype == np.float32
    # test mode: no dropout, deterministic
    a = net.forward(x, train=False)
    b = net.forward(x, train=False)
    np.testing.assert_array_equal(a, b)
    feats = net.forward(x, train=False, until="relu7")
    assert feats.shape == (4, 128)


def test_bad_inputs_and_options():
    net = AlexNet("tiny")
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, 28, 28\)"):
        net.forward(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        AlexNet("huge")
    with pytest.raises(ValueError, match="input_size=8 is too small"):
        AlexNet("mini", input_size=8)
    with pytest.raises(ValueError, match="unknown init"):
        AlexNet("mini", init="xavier")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(groups=0), ValueError, "groups must be an integer >= 1, got 0"),
    (dict(groups=-1), ValueError, "groups must be an integer >= 1, got -1"),
    (dict(dropout=-0.5), ValueError, r"dropout must be a probability in \[0, 1\), got -0.5"),
    (dict(dropout=1.0), ValueError, r"dropout must be a probability in \[0, 1\)"),
    (dict(dropout=float("nan")), ValueError, r"dropout must be a probability"),
    (dict(dropout_mode="bogus"), ValueError, "dropout_mode must be one of"),
    (dict(pool=(0, 2)), ValueError, r"pool must be \(size, stride\), two integers >= 1"),
    (dict(pool=3), ValueError, r"pool must be \(size, stride\)"),
    (dict(dtype=np.int32), TypeError, "dtype must be float32 or float64"),
    (dict(dtype="bogus"), TypeError, "dtype must be float32 or float64"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
    (dict(num_classes=0), ValueError, "num_classes must be an integer >= 1"),
    (dict(in_channels=1.5), ValueError, "in_channels must be an integer >= 1"),
])
def test_the_constructor_checks_what_train_py_checks(kwargs, error, message):
    # unchecked, these would build a net that fails later (a ZeroDivisionError, no
    # dropout layers at all for dropout=-0.5, or a failure only at the first forward)
    with pytest.raises(error, match="AlexNet: " + message):
        AlexNet("tiny", **kwargs)


def test_numpy_integers_are_integers():
    net = AlexNet("tiny", groups=np.int64(2), pool=(np.int64(3), np.int32(2)),
                  seed=np.int64(1), dropout=np.float32(0.5))
    assert net.config["groups"] == 2 and net.config["pool"] == [3, 2]
    ref = AlexNet("tiny", groups=2, seed=1)
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, ref.params[k])


def test_save_load_roundtrip(tmp_path):
    net = AlexNet("tiny", init="he", seed=5)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    net.forward(x, train=True)                          # advances the dropout counters
    path = tmp_path / "m.npz"
    net.save(str(path))
    back = AlexNet.load(str(path))
    assert back.config == net.config
    for k, v in net.params.items():
        np.testing.assert_array_equal(back.params[k], v)
    assert back.extra_state() == net.extra_state()
    np.testing.assert_array_equal(back.forward(x, train=True), net.forward(x, train=True))
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable model file"):
        AlexNet.load(str(tmp_path / "bad.npz"))


def test_model_on_both_backends_agree(cp):
    net = AlexNet("tiny", init="he", seed=2)
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    ref = net.forward(x, train=False)
    out = net.to("cuda").forward(cp.asarray(x), train=False)
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-4, atol=1e-5)


def test_width_gives_the_papers_half_kernel_comparison_net():
    half = AlexNet("paper", groups=1, width=0.5)
    assert [half.params[f"conv{i}.w"].shape[0] for i in range(1, 6)] == [48, 128, 192, 192, 128]
    with pytest.raises(ValueError, match="width must be positive"):
        AlexNet("mini", width=0)


def test_flatten_params_makes_views_of_one_buffer(xp):
    """flatten_params: same values and outputs, each parameter the view of its piece of
    one buffer (so SGD can update them whole); load_state_dict keeps the views; sgd_for
    takes that way on CuPy's few-call route only."""
    from engine.backend import few_calls
    from engine.optim import sgd_for
    net = AlexNet("tiny", init="he", seed=3)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    before = net.forward(x, train=False)
    state = net.state_dict()
    net.to("cpu" if xp is np else "cuda")
    flat = net.flatten_params()
    assert flat.ndim == 1 and flat.size == net.num_params() and flat.dtype == np.float32
    for k, v in net.params.items():
        np.testing.assert_array_equal(to_numpy(v), state[k])
    flat[0] = 123.0                                       # conv1.w comes first
    assert float(net.params["conv1.w"].reshape(-1)[0]) == 123.0
    net.load_state_dict(state)                            # writes into the views
    assert float(flat[0]) == state["conv1.w"].reshape(-1)[0]
    xd = x if xp is np else to_device(x, "cuda")
    # (atol: on NumPy the 3x3 convs take Winograd's route, which rounds otherwise)
    np.testing.assert_allclose(to_numpy(net.forward(xd, train=False)), before, rtol=1e-5,
                               atol=1e-5)
    opt = sgd_for(net, lr=0.01)
    assert (opt.flat is not None) == few_calls(xp)


def test_backward_after_a_forward_stopped_early_is_refused():
    # the later layers' caches still hold the previous batch: a backward through them
    # would mix gradients of two batches, so it must be refused
    net = AlexNet("tiny", init="he", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    logits = net.forward(x, train=True)
    feats = net.forward(x[::-1].copy(), train=True, until="pool5")
    assert feats.shape[0] == 2
    with pytest.raises(RuntimeError, match="backward called before a training forward"):
        net.backward(np.ones_like(logits))
    with pytest.raises(KeyError, match="no layer 'pool9'"):
        net.forward(x, until="pool9")


def test_load_state_dict_takes_arrays_from_either_device(xp):
    src = AlexNet("tiny", init="he", seed=1).to("cpu" if xp is np else "cuda")
    live = dict(src.params)                         # arrays on src's device
    for device in {"cpu", "cpu" if xp is np else "cuda"}:
        dst = AlexNet("tiny", init="he", seed=2).to(device)
        dst.load_state_dict(live)
        for k, v in dst.state_dict().items():
            np.testing.assert_array_equal(v, to_numpy(src.params[k]), err_msg=k)


def test_load_extra_state_names_a_layer_that_is_no_dropout():
    net = AlexNet("tiny")
    with pytest.raises(ValueError, match="conv1 is a Conv2d, not a dropout layer"):
        net.load_extra_state({"conv1": 5})


def test_saved_files_have_the_mode_a_plain_open_gives(tmp_path):
    # mkstemp's 0600 would make every model and checkpoint unreadable to other users
    import os
    old = os.umask(0o022)
    try:
        AlexNet("tiny").save(str(tmp_path / "m.npz"))
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("args", [(0, 3), (4, 3.0), (4, True)])
def test_linear_names_a_bad_size(args):
    from layers.modules import Linear
    with pytest.raises(ValueError, match="Linear: (in|out)_features must be an integer"):
        Linear(*args)


def test_network_config_takes_what_the_constructor_takes():
    # a checkpoint's config is checked against network_config's arguments before the
    # network is built (training/checkpoints.py): they must be AlexNet's own
    import inspect
    from alexnet import network_config
    init = inspect.signature(AlexNet.__init__).parameters
    checked = inspect.signature(network_config).parameters
    assert [(k, p.default) for k, p in init.items() if k != "self"] == \
        [(k, p.default) for k, p in checked.items()]
    for name in ("paper", "mini", "tiny"):
        assert network_config(name) == AlexNet(name).config
