"""Reference solutions of notebook 11 (SGD and the initialization)."""
import numpy as np


def my_sgd_step(w, g, v, lr, momentum, weight_decay):
    """The paper's update: v <- mu v - lambda lr w - lr g; w <- w + v."""
    v = momentum * v - weight_decay * lr * w - lr * g
    return w + v, v


def my_he_std(shape):
    """sqrt(2 / fan_in); fan_in is every axis but the first (C/groups * KH * KW, or D_in)."""
    return np.sqrt(2.0 / np.prod(shape[1:]))
