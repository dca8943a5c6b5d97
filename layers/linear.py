"""Fully connected layer (fc6, fc7, fc8 of AlexNet)."""
from __future__ import annotations

from engine.parallel import matmul
from layers._checks import check_dout, check_float_array, check_same_backend, check_same_dtype
from layers.fast import linear as fast


def linear_forward(x, w, b):
    """Affine map ``out = x @ w.T + b``.

    Inputs:
      x: (N, D_in)          a batch of feature vectors (flatten conv maps first)
      w: (D_out, D_in)      weights, stored as PyTorch's nn.Linear and Caffe store them
      b: (D_out,) or None   bias
    Returns: (out (N, D_out), cache)
    """
    op = "linear_forward"
    check_float_array(x, "x", op, ndim=2)
    check_float_array(w, "w", op, ndim=2)
    if b is not None:
        check_float_array(b, "b", op, ndim=1)
    check_same_dtype(op, x=x, w=w, b=b)
    check_same_backend(op, x=x, w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: x has {x.shape[1]} features but w expects {w.shape[1]} "
                         f"(x shape {tuple(x.shape)}, w shape {tuple(w.shape)})")
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"{op}: b has shape {tuple(b.shape)}, expected ({w.shape[0]},)")
    # x @ w.T, on the CPU's threads and in the operand order BLAS runs fastest
    out = fast.matmul_wide(x, w.T)
    if b is not None:
        out += b
    return out, (x, w, b is not None)


def linear_backward(dout, cache):
    """Gradients of ``out = x @ w.T + b``.

    dx = dout @ w         (N, D_in)
    dw = dout.T @ x       (D_out, D_in)
    db = sum_n dout[n]    (D_out,)  (None if the forward had no bias)
    """
    x, w, has_b = cache
    check_dout("linear_backward", dout, w, shape=(x.shape[0], w.shape[0]))
    # engine.parallel.matmul: the products are split over the threads, each with a
    # one-thread BLAS; a tiny one (fc8) runs on one thread (see engine/parallel.py).
    dx = matmul(dout, w)
    dw = matmul(dout.T, x)
    db = dout.sum(axis=0) if has_b else None
    return dx, dw, db
