"""Stochastic gradient descent with momentum and weight decay, as in Section 5.

The paper's update, for every weight w with gradient g of the batch loss:

    v <- momentum * v - weight_decay * lr * w - lr * g
    w <- w + v

Weight decay is folded into the velocity (it is L2 regularization,
0.5 * weight_decay * |w|^2, whose gradient is weight_decay * w). The paper used
momentum 0.9, weight decay 0.0005, lr 0.01, batch 128, and notes that the small
weight decay "is not merely a regularizer: it reduces the model's training error".

The update reads first, as the formula; the CPU's threaded pieces and the GPU's one
buffer for all the parameters are at the end of this file, and give the same numbers
to the last bit.
"""
from __future__ import annotations

import math

from engine.backend import device_of, few_calls, get_array_module, to_device, to_numpy
from engine.parallel import run_parallel


def _update(w, g, v, lr, momentum, wd):
    """In place: v <- momentum * v - wd * lr * w - lr * g;  w <- w + v.

    The operations and their order are those of the formula, with the scalars cast
    to the parameter's dtype (float32 stays float32).
    """
    if _pieces_apply(w, g, v):             # NumPy: over the threads, no temporaries
        _update_in_pieces(w, g, v, lr, momentum, wd)
        return
    t = w.dtype.type
    v *= t(momentum)
    if wd:
        v -= w * t(wd * lr)          # the array first: its own __mul__ on CuPy
    v -= g * t(lr)
    w += v


class SGD:
    """SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4).

    ``params`` is a dict name -> array (the model's own arrays, updated in place);
    ``step(grads)`` takes a dict with the same keys. ``decay_filter(name)`` says
    which parameters get weight decay (default: all, as the paper wrote it).
    Velocities live on the same device as the parameters and are saved in
    checkpoints through ``state_dict`` / ``load_state_dict``.

    ``flat``: None, or one 1-D array that holds every parameter, in the order of
    ``params``, each parameter a view of its piece (``AlexNet.flatten_params`` makes
    one). Then the velocities are pieces of one array too, and a step is the formula
    applied once to the whole buffer (the gradients gathered into one array first):
    about 20 array calls in all instead of 6 per parameter. Same formula, same order
    of operations per element, so the same numbers to the last bit. :func:`sgd_for`
    chooses it on CuPy.
    """

    def __init__(self, params: dict, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, decay_filter=None, flat=None):
        self.params = params
        self._set_hyper(lr, momentum, weight_decay)
        self.decay_filter = decay_filter or (lambda name: True)
        self.flat = None if flat is None else _check_flat(params, flat)
        if self.flat is not None:
            (self._flat_velocity, self.velocity, self._decay_mask,
             self._any_decay) = _flat_velocities(params, flat, self.decay_filter)
            return
        self.velocity = {k: get_array_module(w).zeros_like(w) for k, w in params.items()}

    def _set_hyper(self, lr, momentum, weight_decay):
        """Check and set the hyperparameters (NaN and inf refused: they would turn
        every weight into NaN at the first step, without a word)."""
        if not 0 < lr < math.inf:
            raise ValueError(f"SGD: lr must be positive and finite, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if not 0 <= weight_decay < math.inf:
            raise ValueError(f"SGD: weight_decay must be >= 0 and finite, "
                             f"got {weight_decay!r}")
        self.lr, self.momentum = float(lr), float(momentum)
        self.weight_decay = float(weight_decay)

    def step(self, grads: dict):
        missing = set(self.params) - set(grads)
        extra = set(grads) - set(self.params)
        if missing or extra:
            raise KeyError(f"SGD.step: grads keys do not match params: missing {sorted(missing)}, "
                           f"unexpected {sorted(extra)}")
        for k, w in self.params.items():
            g = grads[k]
            if g.shape != w.shape:
                raise ValueError(f"SGD.step: grad {k} has shape {tuple(g.shape)}, "
                                 f"param has {tuple(w.shape)}")
            if get_array_module(g) is not get_array_module(w):
                raise TypeError(f"SGD.step: grad {k} is a {get_array_module(g).__name__} "
                                f"array, param a {get_array_module(w).__name__} one; move "
                                f"them to one device")
            if g.dtype != w.dtype:
                # a float64 gradient would be rounded into float32 weights without a word
                raise TypeError(f"SGD.step: grad {k} has dtype {g.dtype}, param has "
                                f"{w.dtype}; cast it first")
        if self.flat is not None:
            _step_flat(self, grads)
            return
        for k, w in self.params.items():
            wd = self.weight_decay if self.decay_filter(k) else 0.0
            _update(w, grads[k], self.velocity[k], self.lr, self.momentum, wd)

    def state_dict(self) -> dict:
        """The hyperparameters and host copies of the velocities (as
        ``AlexNet.state_dict``): a snapshot that later steps leave alone."""
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "velocity": {k: to_numpy(v).copy() for k, v in self.velocity.items()}}

    def load_state_dict(self, state: dict):
        """Velocities from NumPy or CuPy arrays, copied onto this optimizer's device.
        Every parameter must have one: a missing one would keep this optimizer's own
        (usually zero) momentum without a word."""
        vel = state["velocity"]
        unknown, missing = set(vel) - set(self.velocity), set(self.velocity) - set(vel)
        if unknown or missing:
            raise KeyError(f"SGD.load_state_dict: the velocities do not match the "
                           f"parameters: unknown {sorted(unknown)}, missing {sorted(missing)}")
        for k, v in vel.items():
            if tuple(v.shape) != tuple(self.velocity[k].shape):
                raise ValueError(f"SGD.load_state_dict: velocity {k} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(self.velocity[k].shape)}")
        self._set_hyper(state["lr"], state["momentum"], state["weight_decay"])
        for k, v in vel.items():
            self.velocity[k][...] = to_device(v, device_of(self.velocity[k])).astype(
                self.velocity[k].dtype, copy=False)


def sgd_for(model, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4):
    """SGD over a model's parameters, the way training uses it.

    On CuPy's few-call route (engine/backend.py) the parameters are first gathered into
    one buffer (``model.flatten_params()``) and the update runs on it whole (SGD's
    ``flat``); on NumPy, and with the 'loops' route, each parameter is updated on its
    own, in the pieces the CPU's threads share. Call it after ``model.to(device)``.
    """
    xp = get_array_module(next(iter(model.params.values())))
    flat = model.flatten_params() if few_calls(xp) else None
    return SGD(model.params, lr=lr, momentum=momentum, weight_decay=weight_decay, flat=flat)


# ------------------------------------------- the CPU's pieces, the GPU's one buffer

# Elements per piece of a parameter (256 KB of float32): the update makes six passes
# over each piece, all but the first in the CPU's cache.
_PIECE = 1 << 16


def _pieces_apply(w, g, v) -> bool:
    """Whether _update runs in pieces: contiguous arrays, off CuPy's few-call route.
    On CuPy the pieces would make 13 calls per parameter where the formula makes 6,
    each call costing the host time whatever its size, and a temporary the size of w
    costs a GPU little."""
    return not few_calls(get_array_module(w)) and (
        w.flags.c_contiguous and g.flags.c_contiguous and v.flags.c_contiguous)


def _update_in_pieces(w, g, v, lr, momentum, wd):
    """_update piece by piece with one small scratch array, rather than with
    whole-array temporaries (``v -= wd * lr * w`` allocates an array the size of w,
    150 MB for fc6 of the paper net). Pieces go to the threads (engine/parallel.py).
    Every element sees the formula's operations in the formula's order, so the
    result is the same to the last bit."""
    xp = get_array_module(w)
    t = w.dtype.type       # scalars cast to the parameter's dtype: float32 stays float32
    w_flat, g_flat, v_flat = w.reshape(-1), g.reshape(-1), v.reshape(-1)

    def piece(lo, hi):
        v_part, w_part = v_flat[lo:hi], w_flat[lo:hi]
        scratch = xp.empty(hi - lo, dtype=w.dtype)
        v_part *= t(momentum)
        if wd:
            v_part -= xp.multiply(w_part, t(wd * lr), out=scratch)
        v_part -= xp.multiply(g_flat[lo:hi], t(lr), out=scratch)
        w_part += v_part
    run_parallel(piece, w_flat.size, xp, size=w_flat.size, piece_size=_PIECE)


def _address(a) -> int:
    """Where an array's first element is in memory (NumPy or CuPy)."""
    return a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0]


def _check_flat(params, flat):
    """flat, after checking that each parameter is the view of its piece of it."""
    if getattr(flat, "ndim", None) != 1:
        raise ValueError(f"SGD: flat must be a 1-D array, got shape "
                         f"{tuple(getattr(flat, 'shape', ()))}")
    o = 0
    for k, w in params.items():
        if (get_array_module(w) is not get_array_module(flat) or w.dtype != flat.dtype
                or not w.flags.c_contiguous
                or _address(w) != _address(flat) + o * flat.itemsize):
            raise ValueError(f"SGD: parameter {k} is not the view of its piece of flat "
                             f"(elements {o}:{o + w.size}); make the buffer with "
                             f"model.flatten_params(), after model.to(device)")
        o += w.size
    if o != flat.size:
        raise ValueError(f"SGD: flat holds {flat.size} elements, the parameters {o}")
    return flat


def _flat_velocities(params, flat, decay_filter):
    """The velocities as one buffer like flat: (the buffer, each parameter's view of
    it, a 0/1 weight-decay mask per element or None where all or none decay, whether
    any parameter decays)."""
    xp = get_array_module(flat)
    buffer = xp.zeros_like(flat)
    velocity, o = {}, 0
    for k, w in params.items():
        velocity[k] = buffer[o:o + w.size].reshape(w.shape)
        o += w.size
    decays = [decay_filter(k) for k in params]
    mask = None if all(decays) or not any(decays) else xp.concatenate(
        [xp.full(w.size, d, dtype=flat.dtype) for (k, w), d in zip(params.items(), decays)])
    return buffer, velocity, mask, any(decays)


def _step_flat(opt, grads):
    """_update's formula once over the whole buffer of SGD ``opt``."""
    w, v = opt.flat, opt._flat_velocity
    xp = get_array_module(w)
    t = w.dtype.type
    g = xp.concatenate([grads[k].reshape(-1) for k in opt.params])
    v *= t(opt.momentum)
    if opt.weight_decay and opt._any_decay:
        decay = w * t(opt.weight_decay * opt.lr)
        if opt._decay_mask is not None:
            decay *= opt._decay_mask        # 0 where decay_filter said no
        v -= decay
    v -= g * t(opt.lr)
    w += v
