# %% [markdown]
# # 12. The fully connected layer and the whole backward pass
#
# Three layers of AlexNet, fc6, fc7 and fc8, are **fully connected**: every output
# unit sums every input. They hold 96% of the paper net's parameters, and their
# backward is three matrix products. This notebook (read it after notebook 6):
#
# 1. derives the linear layer's backward, $dW$, $db$ and $dx$, with their shapes, and
#    you write it;
# 2. follows the gradient through `model.backward`: what each layer keeps from its
#    forward (its cache), and how the layers hand the gradient on;
# 3. has you backpropagate through AlexNet's whole classifier by hand, fc6 to fc8 with
#    ReLUs and dropout, tensor by tensor, checked against the project's ops and a
#    gradient check;
# 4. puts your function into the network with one call, trains the `tiny` net for an
#    epoch with it, and compares with the built-in op.
#
# The blanks are function stubs in cells tagged `exercise`; the cell under each
# (tagged `check`) prints `PASS` with the error, `FAIL` with the largest difference
# and where it is, or `not written yet`. Reference solutions:
# `notebooks/solutions/12_fully_connected_and_backprop.py`. The code is
# `layers/linear.py`, `layers/modules.py` and `alexnet.py`.

# %%
import inspect
import os
import sys
import time

# Find the repository root (the folder with alexnet.py), so that the project's
# modules import whether Jupyter started in notebooks/ or in the root.
ROOT = os.getcwd()
while not os.path.exists(os.path.join(ROOT, "alexnet.py")) and ROOT != os.path.dirname(ROOT):
    ROOT = os.path.dirname(ROOT)
sys.path.insert(0, ROOT)
# ALEXNET_NOTEBOOK_SMALL=1 shrinks the work (the tests run the notebooks that way).
SMALL = os.environ.get("ALEXNET_NOTEBOOK_SMALL", "0") not in ("", "0")

import matplotlib.pyplot as plt
import numpy as np

plt.rcParams.update({"figure.dpi": 100, "figure.figsize": (9, 3.5)})
np.set_printoptions(precision=4, suppress=True, linewidth=110)

from alexnet import AlexNet
from layers.linear import linear_backward
from layers.loss import softmax_cross_entropy

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## The layer
#
# A batch of $N$ feature vectors $x \in \mathbb{R}^{N \times D_\text{in}}$ (fc6's are
# conv5's pooled maps, flattened: $256 \cdot 6 \cdot 6 = 9216$ numbers per image),
# weights $W \in \mathbb{R}^{D_\text{out} \times D_\text{in}}$ (stored as PyTorch and
# Caffe store them), a bias $b \in \mathbb{R}^{D_\text{out}}$:
#
# $$\text{out} = x W^\top + b, \qquad \text{out}[n, o] = \sum_i x[n, i]\, W[o, i] + b[o].$$
#
# Where the paper net's parameters are:

# %%
net = AlexNet("paper")
total = net.num_params()
for name in ("fc6", "fc7", "fc8"):
    w = net.layer(name).params["w"]
    n = w.size + net.layer(name).params["b"].size
    print(f"{name}: W {w.shape}, {n:>12,} parameters, {100 * n / total:4.1f}% of the net")
fc = sum(v.size for k, v in net.params.items() if k.startswith("fc"))
print(f"fc6 + fc7 + fc8: {100 * fc / total:.1f}% of {total:,}")
del net

# %% [markdown]
# ## Its backward, derived
#
# The layer receives $G = \partial L / \partial\,\text{out}$, shaped as out,
# $(N, D_\text{out})$, and returns the gradients of $L$ with respect to its three
# inputs. Each follows from the sum above by the chain rule,
# $\partial L / \partial \theta = \sum_{n, o} G[n, o]\; \partial\,\text{out}[n, o] / \partial \theta$:
#
# - $\text{out}[n, o]$ depends on $W[o, i]$ through the one term $x[n, i]\,W[o, i]$,
#   for every $n$:
#   $$\frac{\partial L}{\partial W[o, i]} = \sum_n G[n, o]\, x[n, i]
#     \quad\Longrightarrow\quad dW = G^\top x \quad (D_\text{out} \times D_\text{in});$$
# - $b[o]$ is added to $\text{out}[n, o]$ for every $n$:
#   $\;db[o] = \sum_n G[n, o]$, the sum of $G$ over the batch, $(D_\text{out},)$;
# - $x[n, i]$ reaches every output unit $o$ of its own row $n$:
#   $$\frac{\partial L}{\partial x[n, i]} = \sum_o G[n, o]\, W[o, i]
#     \quad\Longrightarrow\quad dx = G\, W \quad (N \times D_\text{in}).$$
#
# A check that costs nothing: each gradient has the shape of what it is the gradient
# of, and for each there is only one way to multiply $G$, $x$ and $W$ (transposed or
# not) that gives that shape. The project's version:

# %%
print(inspect.getsource(linear_backward))

# %% [markdown]
# ### Exercise 1: the linear backward

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py), and head_forward, the
# classifier that exercise 2 goes back through.
import numpy as np
from notebooks.exercises import check_head_backward, check_linear_backward, head_forward

# %% tags=["exercise"]
def my_linear_backward(dout, x, w):
    """Gradients of out = x @ w.T + b.

    dout: (N, D_out); x: (N, D_in); w: (D_out, D_in).
    Returns (dx, dw, db) shaped (N, D_in), (D_out, D_in), (D_out,).
    """
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_linear_backward(my_linear_backward)

# %% [markdown]
# **Question.** $db$ is the **sum** of $G$ over the batch, not its mean, yet the
# update should not grow with the batch size. Where did the division by $N$ go?
#
# <details><summary>Answer</summary>
#
# Into the loss. The loss is the mean over the batch, so `softmax_cross_entropy`
# already divides its gradient by $N$ (notebook 2), and every gradient downstream of
# it carries that $1/N$. Averaging again in $db$ (or $dW$) would divide twice, and
# the bias would learn $N$ times more slowly than the weights: a bug no shape check
# catches, which is why the check compares values.
#
# </details>
#
# ## The cache chain through `model.backward`
#
# A network is a list of layers. In a training forward each layer computes its output
# and keeps what its backward will need, its **cache**: a linear layer keeps its input
# $x$ (and $W$), a ReLU its output, a dropout layer its mask, a pooling layer where each
# window's maximum was, a convolution its im2col matrix or its input. `backward` then
# walks the list from the end, and each layer turns the gradient of its output into
# the gradient of its input, filling its parameters' gradients on the way:

# %%
print(inspect.getsource(AlexNet.backward))

# %% [markdown]
# Here is what each layer of the `tiny` net holds after one training forward, and the
# gradient that passes through it on the way back, walked by hand as `backward` walks
# it:

# %%
from data.augment import mean_image
from data.datasets import load_dataset
from data.loader import iterate_eval

ds = load_dataset("fashion-mnist-subset")
mean = mean_image(ds.train_x)
xb, yb = next(iter(iterate_eval(ds.train_x[:8], ds.train_y[:8], 8, mean=mean)))


def describe(cache):
    """A short description of a cache: the arrays in it, by shape."""
    if cache is None:
        return "-"
    if isinstance(cache, tuple) and all(isinstance(c, int) for c in cache):
        return f"the input's shape {cache}"
    items = cache if isinstance(cache, tuple) else (cache,)
    parts = [f"array{tuple(c.shape)}" for c in items if getattr(c, "ndim", 0)]
    return ", ".join(parts[:3]) + (", ..." if len(parts) > 3 else "")


by_hand = AlexNet("tiny", init="he", seed=0)
logits = by_hand.forward(xb, train=True)
loss, dlogits = softmax_cross_entropy(logits, yb)
print(f"{'layer':<8} {'kind':<18} {'cache kept by the forward':<52} gradient passed down")
d = dlogits
for name, layer in reversed(by_hand.layers):
    cache = describe(layer.cache)
    d = layer.backward(d)
    print(f"{name:<8} {type(layer).__name__:<18} {cache:<52} {tuple(d.shape)}")

# %% [markdown]
# Read from the bottom up, that is the forward; from the top down, the backward: fc8
# gets $dL/d\text{logits}$ (8 images by 10 classes), the flatten layer turns the
# gradient back into conv5's pooled maps, and conv1 returns the gradient of the loss
# with respect to the images themselves. Each cache is consumed (set to `None`): a
# second backward without a new forward is refused rather than computed from stale
# values. And the walk by hand gives exactly what `model.backward` gives (the dropout
# masks are drawn from the seed and the call count, so a second model with the same
# seed draws the same ones):

# %%
model = AlexNet("tiny", init="he", seed=0)
_, d = softmax_cross_entropy(model.forward(xb, train=True), yb)
model.backward(d)
same = all(np.array_equal(model.grads[k], by_hand.grads[k]) for k in model.params)
print(f"every gradient of model.backward equals the walk by hand: {same}")
try:
    model.backward(d)
except RuntimeError as e:
    print(f"a second backward: RuntimeError: {e}")

# %% [markdown]
# ## By hand, through the whole classifier
#
# Now the backward through fc6, its ReLU and dropout, fc7, its ReLU and dropout, and
# fc8, written out tensor by tensor, as Karpathy's makemore part 4 has you
# backpropagate through a whole network. The forward is `head_forward` from
# `notebooks/exercises.py`, the project's ops in a row, keeping every intermediate
# array:

# %%
print(inspect.getsource(head_forward))

# %% [markdown]
# ### Exercise 2: backpropagate through the classifier
#
# You get $dL/d\text{logits}$, the parameters (`params["fc6.w"]`, ...) and every
# array of the forward (`acts["z6"]`, `acts["m6"]`, ...). Go back one op at a time:
# fc8 gives `fc8.w`, `fc8.b` and $dL/da_7$; dropout multiplies by the same mask
# $m_7$ (it already holds the $1/(1-p)$); the ReLU passes the gradient where
# $z_7 > 0$; fc7 gives its gradients and $dL/da_6$; and so on down to $dL/dx$. Return
# a dict with the keys `fc8.w`, `fc8.b`, `fc7.w`, `fc7.b`, `fc6.w`, `fc6.b` and `x`.
# The check compares each with the project's ops chained (and says which ones agree
# before the first that does not), then runs a gradient check of the whole head.

# %% tags=["exercise"]
def my_head_backward(dlogits, params, acts):
    """Gradients of the loss with respect to the classifier's parameters and its input."""
    # YOUR CODE HERE: grads = {}; grads["fc8.w"] = ...
    raise NotImplementedError


# %% tags=["check"]
check_head_backward(my_head_backward)

# %% [markdown]
# ## A gradient check of the whole network
#
# Each piece has been checked; notebook 6 checks their wiring, the whole `tiny` net in
# float64, a few entries of every parameter against centered differences:

# %%
from engine.gradcheck import format_table
from gradcheck import tiny_model_check

results = tiny_model_check(max_checks=2 if SMALL else 4)
print(format_table([r for r in results if r.name.startswith(("fc", "conv1"))]))
print(f"... and {len(results)} parameter arrays in all: "
      f"{'all pass' if all(r.passed for r in results) else 'SOME FAIL'}")
assert all(r.passed for r in results)

# %% [markdown]
# ## Your op inside AlexNet
#
# One call, `swap_linear_backward(model, my_linear_backward)`, makes every fully
# connected layer of a model use your backward (each layer's forward stays the
# project's). Then the `tiny` net trains for one epoch on the bundled Fashion-MNIST
# subset twice, from the same weights on the same batches: once with the built-in op,
# once with yours. If your function is not written yet, the run uses the reference
# solution in its place and says so; write yours and run the cell again.

# %%
from data.loader import BatchLoader
from engine.optim import SGD
from notebooks.exercises import is_written, reference, swap_linear_backward
from training.metrics import topk_error

yours = my_linear_backward
if not is_written(yours, np.ones((2, 3)), np.ones((2, 4)), np.ones((3, 4))):
    print("my_linear_backward is not written yet: this run uses the reference solution "
          "(notebooks/solutions/12_fully_connected_and_backprop.py) in its place")
    yours = reference("12_fully_connected_and_backprop", "my_linear_backward")

n_train = 640 if SMALL else len(ds.train_x)
train_x, train_y = ds.train_x[:n_train], ds.train_y[:n_train]


def one_epoch(swap):
    """Train the tiny net for one epoch; returns the loss of every step and the test error."""
    model = AlexNet("tiny", init="he", seed=0)
    if swap:
        print("your backward is in:", ", ".join(swap_linear_backward(model, yours)))
    opt = SGD(model.params, lr=0.02, momentum=0.9, weight_decay=5e-4)
    loader = BatchLoader(train_x, train_y, 128, seed=0, mean=mean, pad=2, crop=28, flip=True,
                         prefetch=False)
    losses = []
    for xb, yb in loader.iterate(0):
        loss, dlogits = softmax_cross_entropy(model.forward(xb, train=True), yb)
        model.backward(dlogits, input_grad=False)
        opt.step(model.grads)
        losses.append(float(loss))
    scores = np.concatenate([model.forward(xb, train=False)
                             for xb, _ in iterate_eval(ds.test_x, ds.test_y, 500, mean=mean)])
    return np.array(losses), topk_error(scores, ds.test_y, 1)


runs = {}
for label, swap in (("built-in linear_backward", False), ("yours", True)):
    t0 = time.perf_counter()
    runs[label] = one_epoch(swap)
    print(f"{label}: {len(runs[label][0])} steps in {time.perf_counter() - t0:.0f} s, "
          f"last loss {runs[label][0][-1]:.4f}, test error {100 * runs[label][1]:.2f}%")
(l0, e0), (l1, e1) = runs.values()
print(f"largest difference between the two runs' losses: {np.abs(l0 - l1).max():.1e}")

fig, ax = plt.subplots(figsize=(7, 3.2))
for (label, (losses, err)), style in zip(runs.items(), ["-", "--"]):
    ax.plot(np.arange(1, len(losses) + 1), losses, style, label=f"{label} (test error {100 * err:.1f}%)")
ax.axhline(np.log(10), color="0.6", ls=":", label="chance, ln 10")
ax.set_xlabel("training step (batch of 128)"), ax.set_ylabel("training loss")
ax.set_title("tiny AlexNet, one epoch: the built-in backward against yours")
ax.legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# The two curves lie on each other. They need not be equal to the last bit: the
# built-in op splits its matrix products over the CPU's threads, and a sum taken in
# another order rounds differently in float32; over an epoch such differences stay at
# the level of rounding. A wrong backward shows at once: the loss does not fall, or
# the optimizer refuses a gradient of the wrong shape.
#
# ## What to remember
#
# - The linear layer's backward: $dx = G W$, $dW = G^\top x$, $db = \sum_n G$; each
#   gradient has its parameter's shape, and the $1/N$ of the mean comes from the loss.
# - A training forward leaves a cache in every layer; `backward` walks the layers in
#   reverse, each turning the gradient of its output into that of its input, and
#   consumes the caches.
# - Backpropagating through a chain by hand is the chain rule, one small op at a time;
#   compare every tensor, and then the whole, against centered differences.
