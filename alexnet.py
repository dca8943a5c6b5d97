"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, Section 3.5), built from the layers in
``layers/``, with three presets:

- ``paper``: the network of Figure 2 for 3x227x227 input, 60,965,224 parameters with
  the two-GPU connectivity (groups=2 on conv2, conv4 and conv5).
- ``mini``: the same sequence of layers sized for 28 to 32 pixel images
  (Fashion-MNIST, MNIST, CIFAR).
- ``tiny``: narrower still, for notebooks, tests and a first run on a laptop.

Why 227 and not 224: the paper says 224x224 inputs, but conv1 (11x11, stride 4, no
padding) only yields the paper's 55x55 maps from (227 - 11) / 4 + 1 = 55. From 224 it
gives floor(213 / 4) + 1 = 54. So we use 227, as Caffe's reference model did.

    >>> net = AlexNet("mini", in_channels=1, num_classes=10, input_size=28)
    >>> logits = net.forward(x, train=True)          # x: (N, 1, 28, 28) float32
    >>> loss, dlogits = softmax_cross_entropy(logits, y)
    >>> net.backward(dlogits)
    >>> net.params["conv1.w"], net.grads["conv1.w"]   # same keys, same shapes
"""
from __future__ import annotations

import io
import json
import math
import numbers
import os
import stat
import tempfile
import zipfile

import numpy as np

from engine.backend import device_of, get_array_module, to_device, to_numpy
from layers._checks import check_positive_int, is_int
from layers.dropout import MODES as DROPOUT_MODES
from layers.modules import (Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d,
                            ReLU, Tanh)

# Per preset: conv layers as (out_channels, kernel, stride, pad), fc widths, and
# which convs are split into two columns (the paper's two GPUs) when groups=2.
PRESETS = {
    "paper": dict(in_channels=3, num_classes=1000, input_size=227, groups=2,
                  convs=[(96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1), (384, 3, 1, 1),
                         (256, 3, 1, 1)],
                  fc=[4096, 4096]),
    "mini": dict(in_channels=1, num_classes=10, input_size=28, groups=1,
                 convs=[(64, 5, 1, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1),
                        (256, 3, 1, 1)],
                 fc=[1024, 1024]),
    "tiny": dict(in_channels=1, num_classes=10, input_size=28, groups=1,
                 convs=[(16, 5, 1, 2), (32, 5, 1, 2), (48, 3, 1, 1), (48, 3, 1, 1),
                        (32, 3, 1, 1)],
                 fc=[128, 128]),
}
GROUPED = ("conv2", "conv4", "conv5")           # Section 3.2: these see only their GPU's maps
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")  # Section 5: biases initialised to 1
INITS = ("paper", "he", "caffe")


class AlexNet:
    """AlexNet as a list of named layers, with ``params``/``grads`` dicts for the optimizer.

    Args:
      preset: 'paper', 'mini' or 'tiny'.
      in_channels, num_classes, input_size, groups: override the preset's values.
      init: 'paper' (weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0),
            'caffe' (Caffe's bvlc_alexnet: weights N(0, 0.01), N(0, 0.005) in fc6 and fc7;
            those biases 0.1, because 1 gave Caffe a flat loss) or 'he' (weights
            N(0, 2/fan_in); those biases 0.1). The small fixed stds make signals shrink
            layer after layer, so a freshly initialised small net can sit at chance for
            a while; He init scales each layer to keep them alive.
      activation: 'relu' (the paper) or 'tanh' (for the Figure 1 comparison).
      lrn: use local response normalization after conv1 and conv2 (the paper: True).
      pool: (size, stride) of the three max-pools: (3, 2) overlapping (the paper), or
            (2, 2) for the non-overlapping comparison.
      dropout: probability for fc6 and fc7 (the paper: 0.5; 0 turns it off).
      dropout_mode: 'inverted' (default) or 'paper' (see layers/dropout.py).
      seed: seeds the initial weights and the dropout masks.
      width: multiplies the number of kernels of every conv layer (0.5 gives the
            paper's "one GPU with half the kernels" comparison net, Section 3.2).
    """

    def __init__(self, preset: str = "mini", in_channels: int | None = None,
                 num_classes: int | None = None, input_size: int | None = None,
                 groups: int | None = None, init: str = "paper", activation: str = "relu",
                 lrn: bool = True, pool=(3, 2), dropout: float = 0.5,
                 dropout_mode: str = "inverted", seed: int = 0, dtype=np.float32,
                 width: float = 1.0):
        self.config = network_config(preset, in_channels, num_classes, input_size, groups,
                                     init, activation, lrn, pool, dropout, dropout_mode,
                                     seed, dtype, width)
        preset_values = PRESETS[preset]
        self.layers: list[tuple[str, object]] = []
        self._build(preset_values)
        self.device = "cpu"

    # ------------------------------------------------------------------ construction
    def _build(self, preset_values):
        config = self.config
        rng = np.random.default_rng(config["seed"])
        dtype = np.dtype(config["dtype"])
        activation_layer = ReLU if config["activation"] == "relu" else Tanh
        # Every activation follows a conv or fc layer, which keeps neither its output
        # nor the gradient it receives: ReLU may overwrite both (layers/modules.py).
        make_activation = (lambda: ReLU(inplace=True)) if activation_layer is ReLU else Tanh
        shape = (config["in_channels"], config["input_size"], config["input_size"])
        self.layer_shapes = []

        def add(name, layer):
            nonlocal shape
            self.layers.append((name, layer))
            shape = layer.output_shape(shape)
            if any(d < 1 for d in shape):
                raise ValueError(
                    f"AlexNet: input_size={config['input_size']} is too small for preset "
                    f"{config['preset']!r}: the output of {name} would be {shape}")
            self.layer_shapes.append((name, shape))

        def init_std(name, fan_in):
            if config["init"] == "he":
                return float(np.sqrt(2.0 / fan_in))
            return 0.005 if config["init"] == "caffe" and name in ("fc6", "fc7") else 0.01

        def bias(name):
            if name in BIAS_ONE:
                return 1.0 if config["init"] == "paper" else 0.1
            return 0.0

        kernels = conv_kernels(preset_values["convs"], config["groups"], config["width"])
        for i, ((_, kernel, stride, pad), out_channels) in enumerate(
                zip(preset_values["convs"], kernels), start=1):
            name = f"conv{i}"
            groups = config["groups"] if name in GROUPED else 1
            in_channels = shape[0]
            fan_in = in_channels // groups * kernel * kernel
            add(name, Conv2d(in_channels, out_channels, kernel, stride=stride, pad=pad,
                             groups=groups, weight_std=init_std(name, fan_in),
                             bias_init=bias(name), rng=rng, dtype=dtype))
            add(f"{activation_layer.__name__.lower()}{i}", make_activation())
            if i in (1, 2) and config["lrn"]:
                add(f"lrn{i}", LocalResponseNorm(5, 1e-4, 0.75, 2.0))
            if i in (1, 2, 5):
                add(f"pool{i}", MaxPool2d(config["pool"][0], config["pool"][1]))
        # One im2col buffer for all the conv layers (the largest one's size), rather
        # than one per layer: see layers/conv.py, _workspace_cols.
        shared = {}
        for _, layer in self.layers:
            if isinstance(layer, Conv2d):
                layer.workspace = shared
        add("flatten", Flatten())
        for i, width in enumerate(preset_values["fc"] + [config["num_classes"]], start=6):
            name = f"fc{i}"
            add(name, Linear(shape[0], width, weight_std=init_std(name, shape[0]),
                             bias_init=bias(name), rng=rng, dtype=dtype))
            if i < 8:
                add(f"{activation_layer.__name__.lower()}{i}", make_activation())
                if config["dropout"] > 0:
                    add(f"drop{i}", Dropout(config["dropout"], config["dropout_mode"],
                                            seed=config["seed"] * 1000 + i))

    # ------------------------------------------------------------------ parameters
    @property
    def params(self) -> dict:
        """All parameters, ``{"conv1.w": array, "conv1.b": array, ...}`` (the live arrays)."""
        return {f"{name}.{key}": value for name, layer in self.layers
                for key, value in layer.params.items()}

    @property
    def grads(self) -> dict:
        """Gradients from the last backward, with the same keys as ``params``."""
        return {f"{name}.{key}": value for name, layer in self.layers
                for key, value in layer.grads.items()}

    def num_params(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.params.values()))

    def layer(self, name):
        for layer_name, layer in self.layers:
            if layer_name == name:
                return layer
        raise KeyError(f"AlexNet has no layer {name!r}")

    # ------------------------------------------------------------------ passes
    def forward(self, x, train: bool = True, until: str | None = None):
        """Logits (N, num_classes) for a batch x (N, C, H, W).

        ``train`` turns dropout on and keeps the caches the backward needs.
        ``until`` stops after the named layer and returns its output (e.g. 'relu7' for
        the 4096-d fc7 features the paper's Figure 4 compares).
        """
        config = self.config
        expected = (config["in_channels"], config["input_size"], config["input_size"])
        if getattr(x, "ndim", None) != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"AlexNet.forward: expected input of shape (N, {expected[0]}, "
                             f"{expected[1]}, {expected[2]}), got {tuple(getattr(x, 'shape', ()))}")
        if device_of(x) != self.device:
            raise ValueError(f"AlexNet.forward: the model is on {self.device} but the input is on "
                             f"{device_of(x)}; move one of them (model.to(...) or to_device(x, ...))")
        if until is not None:
            self.layer(until)                  # KeyError for a name that is no layer
        for i, (name, layer) in enumerate(self.layers):
            x = layer.forward(x, train)
            if name == until:
                # the layers after it keep no cache of an earlier batch: a backward now
                # says it came before a training forward, instead of mixing two batches
                for _, later in self.layers[i + 1:]:
                    later.cache = None
                return x
        return x

    def backward(self, dlogits, input_grad: bool = True):
        """Backpropagate dL/dlogits through every layer; fills ``grads``; returns dL/dx.

        ``input_grad=False`` skips the gradient with respect to the input images and
        returns None. Training never uses it (the images are data, not parameters), and
        for conv1 it is a GEMM and a col2im over the largest maps of the net; PyTorch
        skips it too when the input does not require grad.
        """
        d = dlogits
        for i in range(len(self.layers) - 1, 0, -1):
            d = self.layers[i][1].backward(d)
        first = self.layers[0][1]            # always conv1, a Conv2d
        return first.backward(d) if input_grad else first.backward(d, need_dx=False)

    # ------------------------------------------------------------------ devices
    def to(self, device: str) -> "AlexNet":
        """Move every parameter to 'cpu' (NumPy) or 'cuda' (CuPy); returns self."""
        for _, layer in self.layers:
            layer.to(device)
        self.device = device
        return self

    def flatten_params(self):
        """Gather every parameter into one 1-D array and make each a view of its piece.

        Returns that array. The values do not change, nor do ``params``' keys and
        shapes; what changes is that the parameters now lie one after another in
        memory, in the order of ``params``, so an optimizer can update them all with
        a few whole-array operations (``SGD(..., flat=...)``; on a GPU each array
        operation costs the host some microseconds). ``load_state_dict`` writes into
        the views, so they stay views; ``to()`` moves each parameter on its own and
        ends the arrangement (flatten again after it). Build the optimizer after it
        (``sgd_for`` does): one built before holds the old arrays, which the model no
        longer uses, so its steps would change nothing the model computes with.
        """
        layers = [(layer, k, v) for _, layer in self.layers for k, v in layer.params.items()]
        dtypes = {v.dtype for _, _, v in layers}
        if len(dtypes) != 1:
            raise ValueError(f"AlexNet.flatten_params: the parameters have several dtypes "
                             f"{sorted(map(str, dtypes))}")
        xp = get_array_module(layers[0][2])
        flat = xp.empty(sum(v.size for _, _, v in layers), dtype=dtypes.pop())
        o = 0
        for layer, k, v in layers:
            piece = flat[o:o + v.size]
            piece[...] = v.reshape(-1)
            layer.params[k] = piece.reshape(v.shape)
            o += v.size
        return flat

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict:
        """State that is not a parameter: the dropout layers' call counters."""
        return {name: layer.calls for name, layer in self.layers if isinstance(layer, Dropout)}

    def load_extra_state(self, state: dict):
        for n, calls in state.items():
            layer = self.layer(n)
            if not isinstance(layer, Dropout):
                raise ValueError(f"AlexNet.load_extra_state: {n} is a "
                                 f"{type(layer).__name__}, not a dropout layer")
            layer.calls = int(calls)

    def state_dict(self) -> dict:
        """Host copies of the parameters (NumPy arrays), keyed as ``params``."""
        return {k: to_numpy(v).copy() for k, v in self.params.items()}

    def load_state_dict(self, state: dict):
        params = self.params
        missing = set(params) - set(state)
        extra = set(state) - set(params)
        if missing or extra:
            raise KeyError(f"AlexNet.load_state_dict: missing {sorted(missing)}, "
                           f"unexpected {sorted(extra)}")
        for k, v in params.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(f"AlexNet.load_state_dict: {k} has shape "
                                 f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
            # NumPy or CuPy arrays, whichever device they are on
            v[...] = to_device(state[k], self.device).astype(v.dtype, copy=False)

    def save(self, path: str):
        """Write config and weights to an .npz file, atomically (temp file + rename)."""
        arrays = {f"param/{k}": v for k, v in self.state_dict().items()}
        arrays["config"] = np.array(json.dumps(self.config))
        arrays["extra_state"] = np.array(json.dumps(self.extra_state()))
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> "AlexNet":
        """Rebuild a model saved with ``save`` (or a train.py checkpoint)."""
        if not stat.S_ISREG(os.stat(path).st_mode):       # a FIFO would block the read
            raise ValueError(f"AlexNet.load: {path} is not a readable model file (not a "
                             f"regular file)")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"AlexNet.load: {path} is not a readable model file (not a "
                             f"zip/npz file)")
        try:
            with np.load(path, allow_pickle=False) as f:
                config = json.loads(str(f["config"]))
                params = {k[len("param/"):]: f[k] for k in f.files if k.startswith("param/")}
                extra = json.loads(str(f["extra_state"])) if "extra_state" in f.files else {}
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"AlexNet.load: {path} is not a readable model file ({e})") from e
        model = cls(**{k: v for k, v in config.items()})
        model.load_state_dict(params)
        model.load_extra_state(extra)
        return model.to(device) if device != "cpu" else model

    # ------------------------------------------------------------------ summary
    def summary(self) -> str:
        """A table: each layer, its output shape for one image, its parameter count."""
        config = self.config
        size = config["input_size"]
        lines = [f"AlexNet preset={config['preset']!r} input {config['in_channels']}x{size}x"
                 f"{size}, {config['num_classes']} classes, groups={config['groups']}, "
                 f"init={config['init']!r}"]
        # the kind column is as wide as the longest layer's description
        w = max([40] + [len(repr(layer)) for _, layer in self.layers])
        header = f"{'layer':<10} {'kind':<{w}} {'output':>16} {'params':>12}"
        lines += [header, "-" * len(header)]
        shapes = dict(self.layer_shapes)
        for name, layer in self.layers:
            n = sum(int(np.prod(v.shape)) for v in layer.params.values())
            shape = "x".join(str(d) for d in shapes[name])
            lines.append(f"{name:<10} {repr(layer):<{w}} {shape:>16} {n:>12,}")
        lines.append("-" * len(header))
        lines.append(f"{'total':<10} {'':<{w}} {'':>16} {self.num_params():>12,}")
        return "\n".join(lines)

    def __repr__(self):
        return f"AlexNet(preset={self.config['preset']!r}, params={self.num_params():,})"


# ---------------------------------------------------------------------------- settings

# The most parameters this project builds: 8 GB of float32 weights, and as much again
# for each of the gradients and the momentum. The paper's net has 61 million.
MAX_PARAMS = 2_000_000_000


def network_config(preset="mini", in_channels=None, num_classes=None, input_size=None,
                   groups=None, init="paper", activation="relu", lrn=True, pool=(3, 2),
                   dropout=0.5, dropout_mode="inverted", seed=0, dtype=np.float32,
                   width=1.0) -> dict:
    """The settings of the network ``AlexNet(...)`` builds from these arguments (its
    ``config``), checked: a ValueError or TypeError names the first bad one. Nothing is
    built, so a checkpoint's settings can be checked before memory is spent on them.

    The checks are train.py's, so that a Python caller gets them too rather than a
    ZeroDivisionError or a net silently built another way: ``groups`` must divide every
    conv layer's kernel count (conv2, conv4 and conv5 are split into groups, and conv1
    and conv3 feed them), ``width`` must leave every conv layer at least one kernel per
    group, and the network must stay under MAX_PARAMS parameters.
    """
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"AlexNet: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if init not in INITS:
        raise ValueError(f"AlexNet: unknown init {init!r}; choose one of {INITS}")
    if activation not in ("relu", "tanh"):
        raise ValueError(f"AlexNet: activation must be 'relu' or 'tanh', got {activation!r}")
    for name, v in (("in_channels", in_channels), ("num_classes", num_classes),
                    ("input_size", input_size), ("groups", groups)):
        if v is not None:
            check_positive_int(v, name, "AlexNet")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"AlexNet: seed must be an integer >= 0, got {seed!r}")
    if (not isinstance(pool, (tuple, list)) or len(pool) != 2
            or not all(is_int(v) and v >= 1 for v in pool)):
        raise ValueError(f"AlexNet: pool must be (size, stride), two integers >= 1, "
                         f"got {pool!r}")
    if not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"AlexNet: dropout must be a probability in [0, 1), got {dropout!r}")
    if dropout_mode not in DROPOUT_MODES:
        raise ValueError(f"AlexNet: dropout_mode must be one of {DROPOUT_MODES}, "
                         f"got {dropout_mode!r}")
    if not isinstance(lrn, (bool, np.bool_)):
        raise ValueError(f"AlexNet: lrn must be True or False, got {lrn!r}")
    if (isinstance(width, bool) or not isinstance(width, numbers.Real)
            or not (math.isfinite(width) and width > 0)):
        raise ValueError(f"AlexNet: width must be positive and finite, got {width!r}")
    try:
        float_type = np.dtype(dtype)
    except TypeError:
        float_type = None
    if float_type not in (np.float32, np.float64):
        raise TypeError(f"AlexNet: dtype must be float32 or float64, got {dtype!r}")
    preset_values = PRESETS[preset]

    def given_or_preset(name, value):
        return int(value if value is not None else preset_values[name])

    config = dict(
        preset=preset,
        in_channels=given_or_preset("in_channels", in_channels),
        num_classes=given_or_preset("num_classes", num_classes),
        input_size=given_or_preset("input_size", input_size),
        groups=given_or_preset("groups", groups),
        init=init, activation=activation, lrn=bool(lrn), pool=[int(pool[0]), int(pool[1])],
        dropout=float(dropout), dropout_mode=dropout_mode, seed=int(seed),
        width=float(width),
        dtype=float_type.name)
    total = sum(math.prod(s) for s in parameter_shapes(config).values())
    if total > MAX_PARAMS:
        raise ValueError(f"AlexNet: preset {preset!r} with width={config['width']:g}, "
                         f"input_size={config['input_size']} and num_classes="
                         f"{config['num_classes']} would have {total:,} parameters; this "
                         f"project builds at most {MAX_PARAMS:,} (8 GB of float32 weights)")
    return config


def conv_kernels(convs, groups: int, width: float) -> list:
    """Each conv layer's kernel count: the preset's (``convs``) times ``width``, rounded
    to the nearest integer. A ValueError names the layer where ``width`` leaves no
    kernel, or where ``groups`` does not divide the count (fewer kernels than groups
    included): the network is never changed to make them fit."""
    kernels = [int(round(c[0] * width)) for c in convs]
    scaled = "" if width == 1 else f" ({width:g} x the preset's, rounded)"
    for i, k in enumerate(kernels, start=1):
        if k < 1:
            least = max(0.5 / c[0] for c in convs)
            raise ValueError(f"AlexNet: width={width:g} leaves conv{i} no kernel "
                             f"({convs[i - 1][0]} x {width:g} rounds to 0): every conv "
                             f"layer needs at least one kernel per group, so width must be "
                             f"at least {least:.4g} here")
    for i, k in enumerate(kernels, start=1):
        if k % groups:
            what = (f"conv{i}'s {k} kernels" if f"conv{i}" in GROUPED else
                    f"conv{i}'s {k} kernels, the input channels of conv{i + 1}")
            fits = [g for g in range(1, min(kernels) + 1) if all(n % g == 0 for n in kernels)]
            raise ValueError(f"AlexNet: groups={groups} does not divide {what}{scaled}: "
                             f"every conv layer's kernel count ({', '.join(map(str, kernels))}) "
                             f"must be a multiple of groups, so groups may be "
                             f"{', '.join(map(str, fits))}")
    return kernels


def parameter_shapes(config: dict) -> dict:
    """``{name: shape}`` of every parameter of the network ``config`` (as
    ``network_config`` returns it) describes, in the order of ``AlexNet.params``,
    worked out without building it; ValueError where an input is too small for it."""
    preset_values = PRESETS[config["preset"]]
    kernels = conv_kernels(preset_values["convs"], config["groups"], config["width"])
    size, stride = config["pool"]
    shape = (config["in_channels"], config["input_size"], config["input_size"])
    shapes = {}

    def check(name):
        if any(d < 1 for d in shape):
            raise ValueError(f"AlexNet: input_size={config['input_size']} is too small for "
                             f"preset {config['preset']!r}: the output of {name} would be "
                             f"{shape}")

    for i, ((_, k, s, p), out) in enumerate(zip(preset_values["convs"], kernels), start=1):
        groups = config["groups"] if f"conv{i}" in GROUPED else 1
        shapes[f"conv{i}.w"], shapes[f"conv{i}.b"] = (out, shape[0] // groups, k, k), (out,)
        shape = (out, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        check(f"conv{i}")
        if i in (1, 2, 5):
            shape = (out, (shape[1] - size) // stride + 1, (shape[2] - size) // stride + 1)
            check(f"pool{i}")
    features = math.prod(shape)
    for i, width in enumerate(preset_values["fc"] + [config["num_classes"]], start=6):
        shapes[f"fc{i}.w"], shapes[f"fc{i}.b"] = (width, features), (width,)
        features = width
    return shapes


# ---------------------------------------------------------------------------- files

# Every file the project writes goes first to a temporary file of this naming, in the
# folder of its target: .alexnet-XXXXXXXX.tmp. One left by a run that was killed is
# removed at the next run's start in that folder (remove_stale_temporaries).
TEMP_PREFIX, TEMP_SUFFIX = ".alexnet-", ".tmp"
OLD_TEMP_PREFIX, OLD_TEMP_SUFFIX = ".tmp-", ".npz"       # the naming before it


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` safely: to a new temporary file in the same folder,
    created exclusively under a unique name (so no file or link planted in the folder is
    followed or overwritten), flushed to disk, then renamed over ``path`` (which
    replaces a link there, never what it points to). A crash, a Ctrl-C or a full disk
    during the write leaves the previous file whole, and the temporary one removed."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file readable by its owner only; give it the mode a plain
        # open() would (0666 less the umask), so other users and containers can read it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_savez(path: str, arrays: dict):
    """np.savez to ``path`` through ``write_atomic``: a crash or Ctrl-C during the
    write leaves the previous file intact, never a half-written one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def remove_stale_temporaries(folder: str) -> list:
    """Remove the temporary files a killed writer left in ``folder`` (this project's
    naming only, regular files and links, never folders); returns their names."""
    removed = []
    for name in sorted(os.listdir(folder)):
        if not ((name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX))
                or (name.startswith(OLD_TEMP_PREFIX) and name.endswith(OLD_TEMP_SUFFIX))):
            continue
        path = os.path.join(folder, name)
        if stat.S_ISREG(os.lstat(path).st_mode) or os.path.islink(path):
            os.unlink(path)
            removed.append(name)
    return removed


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Print an AlexNet preset's layer table.")
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--groups", type=int, default=None)
    args = ap.parse_args()
    print(AlexNet(args.preset, groups=args.groups).summary())
