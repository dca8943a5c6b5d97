"""The ops of AlexNet, each a pair of pure functions, and thin layer objects over them.

    out, cache = conv2d_forward(x, w, b, stride=4, pad=0)
    dx, dw, db = conv2d_backward(dout, cache)

Every function takes its array module (NumPy or CuPy) from its inputs.
"""
from layers.activations import relu_backward, relu_forward, tanh_backward, tanh_forward
from layers.conv import conv2d_backward, conv2d_forward, conv2d_forward_naive
from layers.dropout import dropout_backward, dropout_forward
from layers.linear import linear_backward, linear_forward
from layers.loss import softmax, softmax_cross_entropy
from layers.lrn import lrn_backward, lrn_forward, lrn_forward_naive
from layers.modules import (Conv2d, Dropout, Flatten, Layer, Linear, LocalResponseNorm,
                            MaxPool2d, ReLU, Tanh)
from layers.pool import maxpool2d_backward, maxpool2d_forward, maxpool2d_forward_naive

__all__ = [
    "conv2d_forward", "conv2d_backward", "conv2d_forward_naive",
    "relu_forward", "relu_backward", "tanh_forward", "tanh_backward",
    "lrn_forward", "lrn_backward", "lrn_forward_naive",
    "maxpool2d_forward", "maxpool2d_backward", "maxpool2d_forward_naive",
    "dropout_forward", "dropout_backward",
    "linear_forward", "linear_backward",
    "softmax", "softmax_cross_entropy",
    "Layer", "Conv2d", "ReLU", "Tanh", "LocalResponseNorm", "MaxPool2d", "Dropout", "Linear",
    "Flatten",
]
