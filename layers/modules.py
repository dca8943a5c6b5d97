"""Thin layer objects over the pure functions, as ``nn.Conv2d`` sits over ``F.conv2d``.

A layer holds its parameters and their gradients (dicts with the same keys, e.g.
``{"w": ..., "b": ...}``) and the cache of its last forward pass. The math lives in
the functions; these classes only keep state for the model and the optimizer.

    layer.forward(x, train)  -> out       (remembers what backward needs)
    layer.backward(dout)     -> dx        (fills layer.grads)
"""
from __future__ import annotations

import numpy as np

from engine.backend import to_device
from layers._checks import check_positive_int, pair
from layers.activations import relu_backward, relu_forward, tanh_backward, tanh_forward
from layers.conv import conv2d_backward, conv2d_forward
from layers.dropout import dropout_backward, dropout_forward
from layers.linear import linear_backward, linear_forward
from layers.lrn import lrn_backward, lrn_forward
from layers.pool import maxpool2d_backward, maxpool2d_forward


class Layer:
    """Base class: no parameters, identity-free; subclasses fill in forward/backward."""

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.cache = None

    def forward(self, x, train: bool = True):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def to(self, device: str):
        """Move parameters and gradients to 'cpu' or 'cuda' (in place; returns self)."""
        for k in list(self.params):
            self.params[k] = to_device(self.params[k], device)
            self.grads[k] = to_device(self.grads[k], device)
        self.cache = None
        return self

    def output_shape(self, in_shape: tuple) -> tuple:
        """Shape of one example's output for one example's input shape (no batch dim)."""
        return in_shape

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""

    def _check_backward(self):
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before a training forward")


def _short(hw):
    """(3, 3) -> 3 for printing; (3, 2) stays."""
    return hw[0] if hw[0] == hw[1] else hw


def _normal(rng, shape, std, dtype):
    return (rng.standard_normal(shape) * std).astype(dtype)


class Conv2d(Layer):
    """Convolution with weights (F, C/groups, KH, KW) and biases (F,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, pad=0, groups=1,
                 weight_std=0.01, bias_init=0.0, rng=None, dtype=np.float32):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            check_positive_int(v, name, "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        # Checked here, not at the first forward: output_shape needs them to build a net.
        kh, kw = pair(kernel_size, "kernel_size", "Conv2d")
        stride, pad = pair(stride, "stride", "Conv2d"), pair(pad, "pad", "Conv2d", minimum=0)
        rng = rng if rng is not None else np.random.default_rng(0)
        in_channels, out_channels, groups = int(in_channels), int(out_channels), int(groups)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.pad, self.groups = (kh, kw), stride, pad, groups
        self.params["w"] = _normal(rng, (out_channels, in_channels // groups, kh, kw),
                                   weight_std, dtype)
        self.params["b"] = np.full(out_channels, bias_init, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        # The im2col buffer, reused from step to step; AlexNet gives all its conv
        # layers the same dict, so that they share one buffer (see conv2d_forward).
        self.workspace = {}

    def to(self, device):
        self.workspace.clear()       # in place: layers sharing it keep sharing it
        return super().to(device)

    def forward(self, x, train=True):
        out, cache = conv2d_forward(x, self.params["w"], self.params["b"],
                                    stride=self.stride, pad=self.pad, groups=self.groups,
                                    workspace=self.workspace)
        self.cache = cache if train else None
        return out

    def backward(self, dout, need_dx=True):
        """dL/dx, or None with need_dx=False (see conv2d_backward); fills grads."""
        self._check_backward()
        dx, dw, db = conv2d_backward(dout, self.cache, need_dx=need_dx)
        # Rebinding (not copying into) the gradient arrays: the model's grads dict is
        # rebuilt from the layers each step, so no copy is needed.
        self.grads["w"] = dw
        self.grads["b"] = db
        self.cache = None
        return dx

    def output_shape(self, in_shape):
        c, h, w = in_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.pad
        return (self.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel={_short(self.kernel_size)}, "
                f"stride={_short(self.stride)}, pad={_short(self.pad)}, groups={self.groups}")


class Linear(Layer):
    """Fully connected layer with weights (out_features, in_features)."""

    def __init__(self, in_features, out_features, weight_std=0.01, bias_init=0.0, rng=None,
                 dtype=np.float32):
        super().__init__()
        for v, name in ((in_features, "in_features"), (out_features, "out_features")):
            check_positive_int(v, name, "Linear")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.params["w"] = _normal(rng, (out_features, in_features), weight_std, dtype)
        self.params["b"] = np.full(out_features, bias_init, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, train=True):
        out, cache = linear_forward(x, self.params["w"], self.params["b"])
        self.cache = cache if train else None
        return out

    def backward(self, dout):
        self._check_backward()
        dx, dw, db = linear_backward(dout, self.cache)
        # Rebinding (not copying into) the gradient arrays: the model's grads dict is
        # rebuilt from the layers each step, so no copy is needed.
        self.grads["w"] = dw
        self.grads["b"] = db
        self.cache = None
        return dx

    def output_shape(self, in_shape):
        return (self.out_features,)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class ReLU(Layer):
    """ReLU. ``inplace=True`` overwrites its input in the forward and dout in the
    backward: right after a conv or fc layer (as in AlexNet), which keep neither their
    output nor the gradient they receive, that saves a full-size array each way."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x, train=True):
        out, cache = relu_forward(x, inplace=self.inplace)
        self.cache = cache if train else None
        return out

    def backward(self, dout):
        self._check_backward()
        dx = relu_backward(dout, self.cache, inplace=self.inplace)
        self.cache = None
        return dx

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(Layer):
    def forward(self, x, train=True):
        out, cache = tanh_forward(x)
        self.cache = cache if train else None
        return out

    def backward(self, dout):
        self._check_backward()
        dx = tanh_backward(dout, self.cache)
        self.cache = None
        return dx


class LocalResponseNorm(Layer):
    """LRN across channels with the paper's constants and alpha as the paper writes it."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x, train=True):
        out, cache = lrn_forward(x, size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)
        self.cache = cache if train else None
        return out

    def backward(self, dout):
        self._check_backward()
        dx = lrn_backward(dout, self.cache)
        self.cache = None
        return dx

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class MaxPool2d(Layer):
    """Max-pooling; the paper's overlapping pooling is size=3, stride=2."""

    def __init__(self, size=3, stride=2):
        super().__init__()
        self.size = pair(size, "size", "MaxPool2d")
        self.stride = pair(stride, "stride", "MaxPool2d")
        # The backward's index arrays, kept from step to step (layers/fast/pool.py,
        # _scatter_index); each pooling layer has its own, as their shapes differ.
        self.scatter_index = {}

    def to(self, device):
        self.scatter_index.clear()
        return super().to(device)

    def forward(self, x, train=True):
        out, cache = maxpool2d_forward(x, size=self.size, stride=self.stride)
        self.cache = cache if train else None
        return out

    def backward(self, dout):
        self._check_backward()
        dx = maxpool2d_backward(dout, self.cache, workspace=self.scatter_index)
        self.cache = None
        return dx

    def output_shape(self, in_shape):
        c, h, w = in_shape
        (kh, kw), (sh, sw) = self.size, self.stride
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    def extra_repr(self):
        return f"size={_short(self.size)}, stride={_short(self.stride)}"


class Dropout(Layer):
    """Dropout whose masks are reproducible and resumable.

    The mask of the t-th training forward is a hash of (seed, t, unit)
    (layers.dropout.counter_bits), so a run restarted from a checkpoint (which stores
    t) draws the same masks it would have drawn without the stop, and the CPU and the
    GPU draw the same masks.
    """

    def __init__(self, p=0.5, mode="inverted", seed=0):
        super().__init__()
        self.p, self.mode, self.seed = p, mode, int(seed)
        self.calls = 0

    def forward(self, x, train=True):
        if not train:
            out, _ = dropout_forward(x, p=self.p, train=False, mode=self.mode)
            self.cache = None
            return out
        seed = [self.seed, self.calls]
        self.calls += 1
        out, cache = dropout_forward(x, p=self.p, train=True, mode=self.mode, seed=seed)
        self.cache = cache
        return out

    def backward(self, dout):
        self._check_backward()
        dx = dropout_backward(dout, self.cache)
        self.cache = None
        return dx

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}"


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), as the transition from conv5 to fc6."""

    def forward(self, x, train=True):
        self.cache = x.shape if train else None
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        self._check_backward()
        shape = self.cache
        self.cache = None
        return dout.reshape(shape)

    def output_shape(self, in_shape):
        n = 1
        for d in in_shape:
            n *= d
        return (n,)
