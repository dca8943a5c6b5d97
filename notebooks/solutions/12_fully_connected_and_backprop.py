"""Reference solutions of notebook 12 (the fully connected layer and the whole backward)."""


def my_linear_backward(dout, x, w):
    """out = x w^T + b: dx = dout w, dw = dout^T x, db = the sum of dout over the batch."""
    return dout @ w, dout.T @ x, dout.sum(axis=0)


def my_head_backward(dlogits, params, acts):
    """Back through fc8, drop7, relu7, fc7, drop6, relu6, fc6, one tensor at a time."""
    grads = {}
    grads["fc8.w"] = dlogits.T @ acts["a7"]
    grads["fc8.b"] = dlogits.sum(axis=0)
    da = dlogits @ params["fc8.w"]                  # dL/da7
    for i in (7, 6):
        dh = da * acts[f"m{i}"]                     # dropout: the same mask
        dz = dh * (acts[f"z{i}"] > 0)               # ReLU
        below = acts["a6"] if i == 7 else acts["x"]
        grads[f"fc{i}.w"] = dz.T @ below
        grads[f"fc{i}.b"] = dz.sum(axis=0)
        da = dz @ params[f"fc{i}.w"]                # dL/da6, then dL/dx
    grads["x"] = da
    return grads
