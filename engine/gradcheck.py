"""Gradient checking: prove a hand-written backward against centered differences.

For an op ``out = f(x, w, ...)`` we pick a random upstream gradient ``dout`` and
look at the scalar ``L = sum(out * dout)``. Its exact gradient with respect to any
input is what the op's backward returns for that ``dout``. Numerically,

    dL/dx[i]  ~  (L(x + h e_i) - L(x - h e_i)) / (2 h)          (centered, error O(h^2))

and we compare the two entry by entry with the relative error

    rel = |a - n| / max(1e-8, |a| + |n|)

reporting the worst entry. Everything is done in float64 (float32 has only ~7
digits, too few for differences of size h = 1e-5). Good backward passes give
rel ~ 1e-7 or smaller; a check passes below 1e-5; a bug gives 1e-3 or worse.

Pitfalls the callers avoid: ReLU's kink at 0 and ties in max-pooling (inputs are
drawn away from both), and dropout's randomness (the mask is fixed by a seed, so
every forward sees the same mask).

This module is the machinery only. The checks of every op are in
layers/gradchecks.py, beside the ops; ``python gradcheck.py`` runs them and the
whole-network check, and prints a table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.backend import get_array_module, to_numpy

DEFAULT_H = 1e-5
DEFAULT_TOL = 1e-5


@dataclass
class GradCheckResult:
    op: str
    name: str           # which gradient: "dx", "dw", ...
    rel_error: float    # worst relative error over the checked entries
    checked: int        # how many entries were checked
    total: int          # how many entries the array has
    tol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.rel_error) and self.rel_error <= self.tol)


def rel_error(analytic, numeric, floor: float = 1e-8) -> float:
    """Worst entry of ``|a - n| / max(floor, |a| + |n|)``: below ``floor`` an entry is
    judged by its absolute difference (round-off would make its relative one large)."""
    a = to_numpy(analytic).astype(np.float64)
    n = to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"rel_error: shapes differ, analytic {a.shape} vs numeric {n.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(floor, np.abs(a) + np.abs(n))))


def numerical_gradient(f: Callable[[], float], x, indices=None, h: float = DEFAULT_H):
    """Centered-difference gradient of the scalar ``f()`` with respect to ``x``.

    ``x`` is perturbed in place (and restored), so ``f`` must read it. ``indices``
    is an optional array of flat indices to check; the result holds the numeric
    gradient at those entries only (a 1-D array), or the full gradient if None.
    """
    if not x.flags.c_contiguous:
        # reshape would copy, and the perturbations would never reach x: a silent zero
        raise ValueError("numerical_gradient: x must be C-contiguous (it is perturbed in "
                         "place through a flat view); pass np.ascontiguousarray(x) to f")
    flat = x.reshape(-1)  # a view: writing to it writes to x
    if indices is None:
        indices = range(flat.size)
    out = []
    for i in indices:
        i = int(i)
        old = flat[i].item()
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        out.append((fp - fm) / (2 * h))
    out = np.array(out, dtype=np.float64)
    if isinstance(indices, range) and len(indices) == flat.size:
        out = out.reshape(x.shape)
    return out


def check_op(op_name: str, forward: Callable, backward: Callable, inputs: dict,
             grad_names: Sequence[str | None], kwargs: dict | None = None,
             max_checks: int | None = 200, h: float = DEFAULT_H, tol: float = DEFAULT_TOL,
             seed: int = 0) -> list[GradCheckResult]:
    """Gradient-check one op given as a ``forward``/``backward`` pair.

    ``forward(**inputs, **kwargs) -> (out, cache)`` and ``backward(dout, cache)``
    returns one gradient or a tuple of them, in the order of ``inputs``.
    ``grad_names`` names each returned gradient after the input it belongs to
    (e.g. ``["x", "w", "b"]``); ``None`` skips one. Inputs must be float64.
    At most ``max_checks`` random entries per input are checked.
    """
    kwargs = dict(kwargs or {})
    for k, v in inputs.items():
        if v.dtype != np.float64:
            raise TypeError(f"check_op({op_name}): input {k} must be float64 for a gradient "
                            f"check, got {v.dtype}")
    rng = np.random.default_rng(seed)
    out, cache = forward(**inputs, **kwargs)
    xp = get_array_module(out)
    dout = xp.asarray(rng.standard_normal(out.shape))
    # a copy: a backward that wrote into its dout (as relu_backward(inplace=True) may)
    # would otherwise change the loss the numerical side differentiates, and a wrong
    # backward could agree with itself
    grads = backward(dout.copy(), cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) != len(grad_names):
        raise ValueError(f"check_op({op_name}): backward returned {len(grads)} gradients, "
                         f"expected {len(grad_names)} ({grad_names})")

    def loss():
        o, _ = forward(**inputs, **kwargs)
        return float((o * dout).sum())

    results = []
    for name, g in zip(grad_names, grads):
        if name is None:
            continue
        x = inputs[name]
        if g.shape != x.shape:
            raise ValueError(f"check_op({op_name}): d{name} has shape {g.shape}, "
                             f"but {name} has shape {x.shape}")
        idx = _sample_indices(x.size, max_checks, rng)
        num = numerical_gradient(loss, x, idx, h)
        ana = to_numpy(g).reshape(-1)[idx]
        results.append(GradCheckResult(op_name, "d" + name, rel_error(ana, num),
                                       len(idx), int(x.size), tol))
    return results


def check_loss(op_name: str, loss_fn: Callable, inputs: dict, name: str,
               max_checks: int | None = 200, h: float = DEFAULT_H,
               tol: float = DEFAULT_TOL, seed: int = 0) -> list[GradCheckResult]:
    """Gradient-check a loss ``loss_fn(**inputs) -> (loss, dinput)`` w.r.t. ``inputs[name]``."""
    x = inputs[name]
    if x.dtype != np.float64:
        raise TypeError(f"check_loss({op_name}): input {name} must be float64 for a gradient "
                        f"check, got {x.dtype}")
    rng = np.random.default_rng(seed)
    _, g = loss_fn(**inputs)
    idx = _sample_indices(x.size, max_checks, rng)
    num = numerical_gradient(lambda: float(loss_fn(**inputs)[0]), x, idx, h)
    ana = to_numpy(g).reshape(-1)[idx]
    return [GradCheckResult(op_name, "d" + name, rel_error(ana, num), len(idx), int(x.size), tol)]


def _sample_indices(size: int, max_checks: int | None, rng) -> np.ndarray:
    if max_checks is None or size <= max_checks:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_checks, replace=False))


def format_table(results: Sequence[GradCheckResult]) -> str:
    """One row per op and gradient: relative error, entries checked, PASS/FAIL."""
    header = f"{'op':<34} {'grad':<6} {'rel. error':>11} {'checked':>13}  result"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.op:<34} {r.name:<6} {r.rel_error:>11.2e} "
                     f"{f'{r.checked}/{r.total}':>13}  {'PASS' if r.passed else 'FAIL'}")
    return "\n".join(lines)
