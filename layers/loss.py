"""Softmax and the multinomial logistic regression (cross-entropy) loss."""
from __future__ import annotations

import numpy as np

from engine.backend import get_array_module
from layers._checks import check_float_array


def softmax(logits):
    """Row-wise softmax, stable: exp(z - max z) / sum exp(z - max z)."""
    check_float_array(logits, "logits", "softmax", ndim=2)
    xp = get_array_module(logits)
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels, check_labels=True):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

        p[n, k]  = exp(z[n, k]) / sum_j exp(z[n, j])
        loss     = -(1/N) sum_n log p[n, y_n]
        dz[n, k] = (p[n, k] - [k == y_n]) / N

    Subtracting the row maximum before exponentiating changes nothing
    mathematically but keeps exp() from overflowing: logits of 1e4 give a finite
    loss and gradient. log p is computed as (z - max) - log(sum exp(z - max)),
    never as log(p), so a tiny probability never becomes log(0).

    Inputs:  logits (N, K) float32/float64; labels (N,) integers in [0, K).
    check_labels: verify every label is in range (one small device->host sync; the
             training loop checks the whole dataset once and passes False).
    Returns: (loss, dlogits): loss a 0-d array of logits' dtype (float() it to log;
             on the GPU that synchronizes), dlogits (N, K).
    """
    op = "softmax_cross_entropy"
    check_float_array(logits, "logits", op, ndim=2)
    xp = get_array_module(logits)
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be an integer array, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if xp is np and get_array_module(labels) is not np:
        # (host labels with device logits are fine: they are copied over below)
        raise TypeError(f"{op}: labels are on the GPU ({get_array_module(labels).__name__}) "
                        f"but logits on the CPU (numpy); move them to one device")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{op}: labels must have shape ({logits.shape[0]},) to match logits "
                         f"{tuple(logits.shape)}, got {tuple(labels.shape)}")
    n, k = logits.shape
    if n == 0:
        raise ValueError(f"{op}: empty batch (logits shape {tuple(logits.shape)})")
    labels = xp.asarray(labels)
    if check_labels:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"{op}: labels must be in [0, {k}) for {k} classes, "
                             f"got values in [{lo}, {hi}]")
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = xp.arange(n)
    log_s = xp.log(s[:, 0])
    log_p_true = z[rows, labels] - log_s
    dlogits = e / s
    loss = -log_p_true.mean()
    dlogits[rows, labels] -= 1
    dlogits /= n
    return loss, dlogits
