"""The gradient checks of every op (``python gradcheck.py`` runs them, with the
whole-network check): small float64 inputs, chosen so that centered differences are
valid: values kept away from ReLU's kink at 0, pooling inputs free of ties, and
dropout masks fixed by a seed. The machinery is engine/gradcheck.py.
"""
from __future__ import annotations

import numpy as np

from engine.backend import to_device
from engine.gradcheck import check_loss, check_op
from layers.activations import relu_backward, relu_forward, tanh_backward, tanh_forward
from layers.conv import conv2d_backward, conv2d_forward
from layers.dropout import dropout_backward, dropout_forward
from layers.linear import linear_backward, linear_forward
from layers.loss import softmax_cross_entropy
from layers.lrn import lrn_backward, lrn_forward
from layers.pool import maxpool2d_backward, maxpool2d_forward


def op_checks(device="cpu", seed=0, max_checks=200):
    """Gradient checks of every op, one list of results per case."""
    rng = np.random.default_rng(seed)

    def dev(a):
        return to_device(np.asarray(a, dtype=np.float64), device)

    def normal(*shape):
        return dev(rng.standard_normal(shape))

    cases = [
        ("conv2d (stride 1, pad 1)", conv2d_forward, conv2d_backward,
         {"x": normal(2, 3, 7, 7), "w": normal(4, 3, 3, 3), "b": normal(4)},
         ["x", "w", "b"], {"stride": 1, "pad": 1}),
        ("conv2d (stride 2, pad 2, 5x5, 9x7 input)", conv2d_forward, conv2d_backward,
         {"x": normal(2, 2, 9, 7), "w": normal(3, 2, 5, 5), "b": normal(3)},
         ["x", "w", "b"], {"stride": 2, "pad": 2}),
        ("conv2d (groups 2, like conv2)", conv2d_forward, conv2d_backward,
         {"x": normal(2, 4, 6, 6), "w": normal(6, 2, 3, 3), "b": normal(6)},
         ["x", "w", "b"], {"stride": 1, "pad": 1, "groups": 2}),
        ("conv2d (11x11 stride 4, like conv1)", conv2d_forward, conv2d_backward,
         {"x": normal(1, 3, 19, 19), "w": normal(2, 3, 11, 11), "b": normal(2)},
         ["x", "w", "b"], {"stride": 4, "pad": 0}),
        ("relu", relu_forward, relu_backward,
         {"x": dev(_away_from_kink(rng, (3, 4, 5)))}, ["x"], {}),
        ("tanh", tanh_forward, tanh_backward, {"x": normal(3, 4, 5)}, ["x"], {}),
        ("lrn (paper: n=5, alpha=1e-4, beta=0.75, k=2)", lrn_forward, lrn_backward,
         {"x": normal(2, 7, 3, 3)}, ["x"], {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}),
        ("lrn (alpha=1, exposes window bugs)", lrn_forward, lrn_backward,
         {"x": normal(2, 7, 3, 3)}, ["x"], {"size": 5, "alpha": 1.0, "beta": 0.75, "k": 2.0}),
        ("maxpool2d (3x3 stride 2, overlapping)", maxpool2d_forward, maxpool2d_backward,
         {"x": dev(_tie_free(rng, (2, 3, 9, 9)))}, ["x"], {"size": 3, "stride": 2}),
        ("maxpool2d (2x2 stride 2)", maxpool2d_forward, maxpool2d_backward,
         {"x": dev(_tie_free(rng, (2, 3, 8, 6)))}, ["x"], {"size": 2, "stride": 2}),
        ("dropout (inverted, fixed mask)", dropout_forward, dropout_backward,
         {"x": normal(4, 10)}, ["x"], {"p": 0.5, "seed": 1, "mode": "inverted"}),
        ("dropout (paper form, fixed mask)", dropout_forward, dropout_backward,
         {"x": normal(4, 10)}, ["x"], {"p": 0.5, "seed": 1, "mode": "paper"}),
        ("linear", linear_forward, linear_backward,
         {"x": normal(4, 6), "w": normal(5, 6), "b": normal(5)}, ["x", "w", "b"], {}),
    ]
    results = []
    for name, fwd, bwd, inputs, names, kwargs in cases:
        results += check_op(name, fwd, bwd, inputs, names, kwargs, max_checks=max_checks,
                            seed=seed)
    labels = to_device(rng.integers(0, 5, size=6), device)
    results += check_loss("softmax_cross_entropy",
                          lambda logits: softmax_cross_entropy(logits, labels),
                          {"logits": normal(6, 5)}, "logits", max_checks=max_checks, seed=seed)
    return results


def _tie_free(rng, shape):
    """Distinct values spaced at least 1e-3 apart (a shuffled ramp): no ties, so a
    perturbation of 1e-5 can never change which entry of a pooling window is the max."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 1e-3 + rng.standard_normal() * 0.1).astype(np.float64)


def _away_from_kink(rng, shape, margin=0.05):
    """Normal values pushed at least ``margin`` away from 0, ReLU's kink."""
    x = rng.standard_normal(shape)
    return np.sign(x) * (np.abs(x) + margin)
