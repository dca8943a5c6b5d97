"""Reference solutions of notebook 01 (convolution as im2col)."""
import numpy as np

from engine.im2col import col2im, im2col


def my_conv_forward(x, w, b, stride, pad):
    """Convolution by loops: x (N, C, H, W), w (F, C, KH, KW), b (F,) -> (N, F, OH, OW)."""
    N, _, H, W = x.shape
    F, _, KH, KW = w.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty((N, F, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            window = xpad[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW]
            # (N, C, KH, KW) against (F, C, KH, KW): sum over c, i, j for every n, f
            out[:, :, oh, ow] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def my_conv_backward(dout, x, w, stride, pad):
    """dx, dw, db of the convolution through im2col: out = W cols + b."""
    F, _, KH, KW = w.shape
    cols = im2col(x, KH, KW, (stride, stride), (pad, pad))       # (C*KH*KW, N*OH*OW)
    g = dout.transpose(1, 0, 2, 3).reshape(F, -1)                 # (F, N*OH*OW), columns (n, oh, ow)
    dw = (g @ cols.T).reshape(w.shape)
    db = g.sum(axis=1)
    dcols = w.reshape(F, -1).T @ g                                # a gradient for every copy
    dx = col2im(dcols, x.shape, KH, KW, (stride, stride), (pad, pad))   # summed onto the pixels
    return dx, dw, db
