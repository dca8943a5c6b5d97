"""Stochastic gradient descent with momentum and weight decay, as in Section 5.

The paper's update, for every weight w with gradient g of the batch loss:

    v <- momentum * v - weight_decay * lr * w - lr * g
    w <- w + v

Weight decay is folded into the velocity (it is L2 regularization,
0.5 * weight_decay * |w|^2, whose gradient is weight_decay * w). The paper used
momentum 0.9, weight decay 0.0005, lr 0.01, batch 128, and notes that the small
weight decay "is not merely a regularizer: it reduces the model's training error".
"""
from __future__ import annotations

import math

from engine.backend import device_of, few_calls, get_array_module, to_device, to_numpy
from engine.parallel import run_parallel

# Elements per piece of a parameter (256 KB of float32): the update makes six passes
# over each piece, all but the first in the CPU's cache.
_PIECE = 1 << 16


def _update(w, g, v, lr, momentum, wd):
    """In place: v <- momentum * v - wd * lr * w - lr * g;  w <- w + v.

    Done piece by piece with one small scratch array, rather than with whole-array
    temporaries (``v -= wd * lr * w`` allocates an array the size of w, 150 MB for
    fc6 of the paper net). Pieces go to the threads (engine/parallel.py). The
    operations and their order are those of the formula, so the result is the same
    to the last bit.
    """
    xp = get_array_module(w)
    t = w.dtype.type       # scalars cast to the parameter's dtype: float32 stays float32
    # On CuPy the pieces below would be 13 calls per parameter, each some microseconds
    # of the host's time (see engine/im2col.py), and a temporary the size of w costs
    # little on a GPU: the formula as it reads, 6 calls.
    if few_calls(xp) or not (w.flags.c_contiguous and g.flags.c_contiguous
                            and v.flags.c_contiguous):
        v *= t(momentum)
        if wd:
            v -= w * t(wd * lr)          # the array first: its own __mul__ on CuPy
        v -= g * t(lr)
        w += v
        return
    wf, gf, vf = w.reshape(-1), g.reshape(-1), v.reshape(-1)

    def piece(lo, hi):
        vp, wp = vf[lo:hi], wf[lo:hi]
        scratch = xp.empty(hi - lo, dtype=w.dtype)
        vp *= t(momentum)
        if wd:
            vp -= xp.multiply(wp, t(wd * lr), out=scratch)
        vp -= xp.multiply(gf[lo:hi], t(lr), out=scratch)
        wp += vp
    run_parallel(piece, wf.size, xp, size=wf.size, piece_size=_PIECE)


def _address(a) -> int:
    """Where an array's first element is in memory (NumPy or CuPy)."""
    return a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0]


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
    about 20 array calls instead of 6 per parameter, and a handful of GPU kernels
    instead of about a hundred small ones. Same formula, same order of operations per
    element, so the same numbers to the last bit. :func:`sgd_for` chooses it on CuPy.
    """

    def __init__(self, params: dict, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, decay_filter=None, flat=None):
        self.params = params
        self._set_hyper(lr, momentum, weight_decay)
        self.decay_filter = decay_filter or (lambda name: True)
        self.velocity = {}
        self.flat = None if flat is None else self._check_flat(flat)
        if self.flat is not None:
            xp = get_array_module(flat)
            self._flat_velocity = xp.zeros_like(flat)
            o = 0
            for k, w in params.items():
                self.velocity[k] = self._flat_velocity[o:o + w.size].reshape(w.shape)
                o += w.size
            # per element: weight decay or not (decay_filter), as a 0/1 mask where needed
            decays = [self.decay_filter(k) for k in params]
            self._decay_mask = None if all(decays) or not any(decays) else xp.concatenate(
                [xp.full(w.size, d, dtype=flat.dtype) for (k, w), d in zip(params.items(),
                                                                         decays)])
            self._any_decay = any(decays)
            return
        for k, w in params.items():
            xp = get_array_module(w)
            self.velocity[k] = xp.zeros_like(w)

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

    def _check_flat(self, flat):
        """flat, after checking that each parameter is the view of its piece of it."""
        if getattr(flat, "ndim", None) != 1:
            raise ValueError(f"SGD: flat must be a 1-D array, got shape "
                             f"{tuple(getattr(flat, 'shape', ()))}")
        o = 0
        for k, w in self.params.items():
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
            self._step_flat(grads)
            return
        for k, w in self.params.items():
            wd = self.weight_decay if self.decay_filter(k) else 0.0
            _update(w, grads[k], self.velocity[k], self.lr, self.momentum, wd)

    def _step_flat(self, grads):
        """_update's formula once over the whole buffer."""
        w, v = self.flat, self._flat_velocity
        xp = get_array_module(w)
        t = w.dtype.type
        g = xp.concatenate([grads[k].reshape(-1) for k in self.params])
        v *= t(self.momentum)
        if self.weight_decay and self._any_decay:
            decay = w * t(self.weight_decay * self.lr)
            if self._decay_mask is not None:
                decay *= self._decay_mask        # 0 where decay_filter said no
            v -= decay
        v -= g * t(self.lr)
        w += v

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


def cosine_lr(lr0: float, done: int, total: int) -> float:
    """Cosine annealing of the learning rate (Loshchilov & Hutter 2017, SGDR, here
    without restarts; not in the AlexNet paper, which divided it by 10 by hand): the
    rate once ``done`` of ``total`` epochs are done,

        lr0 * (1 + cos(pi * done / total)) / 2,

    lr0 at the start, lr0 / 2 halfway, falling towards 0 at the end: it falls slowly
    at first and last and fastest in the middle, where the step schedule's drops come
    at once. ``train.py --cosine`` sets the rate of each epoch from it (``done`` = the
    epochs before it), so the last epoch of ``total`` trains at lr0 (1 - cos(pi/total)) / 2.
    """
    if not (isinstance(total, int) and total >= 1):
        raise ValueError(f"cosine_lr: total must be a whole number of epochs >= 1, got {total!r}")
    if not (isinstance(done, int) and 0 <= done <= total):
        raise ValueError(f"cosine_lr: done must be a whole number of epochs in [0, {total}], "
                         f"got {done!r}")
    return float(lr0) * (1.0 + math.cos(math.pi * done / total)) / 2.0
