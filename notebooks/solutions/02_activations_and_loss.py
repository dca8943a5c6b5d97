"""Reference solutions of notebook 02 (activations and the loss)."""
import numpy as np


def my_relu_backward(dout, x):
    """ReLU'(x) = [x > 0]."""
    return dout * (x > 0)


def my_tanh_backward(dout, out):
    """tanh'(x) = 1 - tanh(x)^2, from the forward's output out = tanh(x)."""
    return dout * (1 - out ** 2)


def my_softmax_cross_entropy(logits, labels):
    """Mean cross-entropy and its gradient (p - onehot) / N, in the stable form."""
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)       # every exponent <= 0
    log_sum = np.log(np.exp(z).sum(axis=1))
    log_p = z - log_sum[:, None]                          # log softmax, never log(0)
    loss = -log_p[np.arange(N), labels].mean()
    dlogits = np.exp(log_p)
    dlogits[np.arange(N), labels] -= 1
    return loss, dlogits / N
