"""Reference solutions of notebook 04 (overlapping max-pooling)."""
import numpy as np


def my_maxpool_forward(x, size, stride):
    """The maximum of each size x size window, moved by stride; no padding."""
    N, C, H, W = x.shape
    OH, OW = (H - size) // stride + 1, (W - size) // stride + 1
    out = np.empty((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


def my_maxpool_backward(dout, x, size, stride):
    """Each output's gradient goes to its window's first maximum; where windows
    overlap a pixel can win several of them, and their gradients add (+=)."""
    N, C = x.shape[:2]
    OH, OW = dout.shape[2:]
    dx = np.zeros_like(x)
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for i in range(OH):
        for j in range(OW):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            first = window.reshape(N, C, -1).argmax(axis=2)      # row-major: the tie rule
            p, q = np.divmod(first, size)
            dx[n, c, i * stride + p, j * stride + q] += dout[:, :, i, j]
    return dx
