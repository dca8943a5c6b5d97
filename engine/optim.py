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

from engine.backend import few_calls, get_array_module
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


class SGD:
    """SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4).

    ``params`` is a dict name -> array (the model's own arrays, updated in place);
    ``step(grads)`` takes a dict with the same keys. ``decay_filter(name)`` says
    which parameters get weight decay (default: all, as the paper wrote it).
    Velocities live on the same device as the parameters and are saved in
    checkpoints through ``state_dict`` / ``load_state_dict``.
    """

    def __init__(self, params: dict, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, decay_filter=None):
        if lr <= 0:
            raise ValueError(f"SGD: lr must be positive, got {lr!r}")
        if not (0.0 <= momentum < 1.0):
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if weight_decay < 0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay!r}")
        self.params = params
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.decay_filter = decay_filter or (lambda name: True)
        self.velocity = {}
        for k, w in params.items():
            xp = get_array_module(w)
            self.velocity[k] = xp.zeros_like(w)

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
            wd = self.weight_decay if self.decay_filter(k) else 0.0
            _update(w, g, self.velocity[k], self.lr, self.momentum, wd)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "velocity": dict(self.velocity)}

    def load_state_dict(self, state: dict):
        self.lr = float(state["lr"])
        self.momentum = float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
        for k, v in state["velocity"].items():
            if k not in self.velocity:
                raise KeyError(f"SGD.load_state_dict: unknown parameter {k!r}")
            if tuple(v.shape) != tuple(self.velocity[k].shape):
                raise ValueError(f"SGD.load_state_dict: velocity {k} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(self.velocity[k].shape)}")
            xp = get_array_module(self.velocity[k])
            self.velocity[k][...] = xp.asarray(v, dtype=self.velocity[k].dtype)
