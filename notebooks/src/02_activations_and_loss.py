# %% [markdown]
# # 2. Activations and the loss
#
# Section 3.1 of the paper replaced the usual saturating nonlinearity, $\tanh$, by the
# rectified linear unit, $f(x) = \max(0, x)$, and reported (Figure 1) that a
# four-layer CNN reached 25% training error on CIFAR-10 **six times faster** with it.
# The last layer is a softmax over the classes, trained with the cross-entropy loss
# (multinomial logistic regression).
#
# This notebook looks at both ends of the network:
#
# 1. ReLU against tanh: their gradients, and what **saturation** means;
# 2. the Figure 1 claim, tried on a small run of our own;
# 3. softmax and cross-entropy, and why the **stable** form matters.
#
# The code it runs is `layers/activations.py` and `layers/loss.py`. You write three
# things into stubs (cells tagged `exercise`): ReLU's backward, tanh's backward, and
# the softmax cross-entropy with its gradient, which this notebook derives. The cell
# under each stub checks it and prints `PASS`, `FAIL` (with where) or `not written yet`;
# the reference solutions are in `notebooks/solutions/02_activations_and_loss.py`.

# %%
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

from engine.gradcheck import check_loss, check_op, format_table
from layers.activations import relu_backward, relu_forward, tanh_backward, tanh_forward
from layers.loss import softmax, softmax_cross_entropy

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## Two nonlinearities and their gradients
#
# $$\text{ReLU}(x) = \max(0, x), \quad \text{ReLU}'(x) = [x > 0];
#   \qquad \tanh'(x) = 1 - \tanh^2(x).$$
#
# The backward pass multiplies the upstream gradient by this derivative. We get it from
# the project's backward functions by sending an upstream gradient of ones:

# %%
z = np.linspace(-5, 5, 1001)
relu_out, relu_cache = relu_forward(z)
tanh_out, tanh_cache = tanh_forward(z)
relu_grad = relu_backward(np.ones_like(z), relu_cache)
tanh_grad = tanh_backward(np.ones_like(z), tanh_cache)

fig, axes = plt.subplots(1, 2)
axes[0].plot(z, relu_out, label="ReLU")
axes[0].plot(z, tanh_out, label="tanh")
axes[0].set_title("f(x)"), axes[0].set_ylabel("f(x)")
axes[1].plot(z, relu_grad, label="ReLU'")
axes[1].plot(z, tanh_grad, label="tanh'")
axes[1].set_title("f'(x): what the backward multiplies by"), axes[1].set_ylabel("f'(x)")
for ax in axes:
    ax.axhline(0, color="gray", lw=0.5), ax.axvline(0, color="gray", lw=0.5)
    ax.set_xlabel("x"), ax.legend()
plt.tight_layout()
plt.show()
print(f"tanh'(3) = {tanh_grad[np.searchsorted(z, 3)]:.4f},  tanh'(5) = {tanh_grad[-1]:.6f}; "
      f"ReLU'(x) = 1 for every x > 0")

# ReLU is also cheaper: a comparison and a multiply, against an exponential.
big = rng.standard_normal((8 if SMALL else 32, 96, 55, 55)).astype(np.float32)  # conv1-sized
for name, fwd, bwd in [("ReLU", relu_forward, relu_backward), ("tanh", tanh_forward, tanh_backward)]:
    times = []
    for _ in range(4):                        # the first run warms up; keep the best
        t0 = time.perf_counter()
        out, cache = fwd(big)
        bwd(big, cache)
        times.append(time.perf_counter() - t0)
    print(f"{name}: forward + backward over {big.size / 1e6:.0f} million values in "
          f"{1e3 * min(times[1:]):.0f} ms")

# %% [markdown]
# ## Saturation
#
# A tanh unit whose input is large in magnitude sits on a flat part of the curve: its
# derivative is nearly 0, so almost no gradient flows back through it and the weights
# before it barely move. That is **saturation**. A ReLU never saturates for positive
# inputs (its derivative is exactly 1) and is exactly 0 for negative ones.
#
# How many units saturate depends on the scale of their inputs. Here are layers of
# pre-activations $x \sim \mathcal{N}(0, \sigma^2)$ for growing $\sigma$: the share of
# tanh units whose derivative is below 0.1, against the share of ReLUs passing the
# gradient unchanged.

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), sharey=True)
for ax, sigma in zip(axes, [0.5, 2.0, 5.0]):
    x = sigma * rng.standard_normal(100_000)
    g_tanh = tanh_backward(np.ones_like(x), tanh_forward(x)[1])
    g_relu = relu_backward(np.ones_like(x), relu_forward(x)[1])
    ax.hist(g_tanh, bins=50, range=(0, 1), color="C1")
    ax.set_title(f"sigma = {sigma}: {np.mean(g_tanh < 0.1):.0%} of tanh' < 0.1\n"
                 f"(ReLU' = 1 for {np.mean(g_relu == 1):.0%})", fontsize=10)
    ax.set_xlabel("tanh'(x)")
axes[0].set_ylabel("units")
plt.tight_layout()
plt.show()

# %% [markdown]
# Both backward passes are checked against centered differences. ReLU has a kink at 0
# where the derivative jumps, so its inputs are kept at least 0.05 away from it (a step
# of $h$ across the kink would give a meaningless numerical slope).

# %%
x_relu = rng.standard_normal((3, 4, 5))
x_relu += 0.05 * np.sign(x_relu)               # away from the kink at 0
results = check_op("relu", relu_forward, relu_backward, {"x": x_relu}, ["x"])
results += check_op("tanh", tanh_forward, tanh_backward,
                    {"x": rng.standard_normal((3, 4, 5))}, ["x"])
print(format_table(results))
assert all(r.passed for r in results)

# %% [markdown]
# ### Exercises 1 and 2: the two backward passes
#
# Write them yourself. ReLU's backward gets the forward's input $x$; tanh's gets the
# forward's **output** $y = \tanh x$, which is all it needs, since
# $\tanh'(x) = 1 - y^2$ (that is why `tanh_forward` caches its output).

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py).
import numpy as np
from notebooks.exercises import (check_relu_backward, check_softmax_cross_entropy,
                                 check_tanh_backward)

# %% tags=["exercise"]
def my_relu_backward(dout, x):
    """dx for out = max(0, x): dout where x > 0, else 0. Shapes: all the same."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_relu_backward(my_relu_backward)

# %% tags=["exercise"]
def my_tanh_backward(dout, out):
    """dx for out = tanh(x), written with the forward's output only."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_tanh_backward(my_tanh_backward)

# %% [markdown]
# **Question.** The check draws ReLU's inputs at least 0.05 away from 0. What would go
# wrong for an input at $10^{-7}$?
#
# <details><summary>Answer</summary>
#
# The centered difference steps $h = 10^{-5}$ to each side. From $10^{-7}$ that is
# $10^{-5} + 10^{-7}$ on one side (slope 1) and $-10^{-5} + 10^{-7}$ on the other
# (output 0), so the numerical slope is about 0.5 while the backward says 1: a
# "failure" that only says the step crossed the kink, where ReLU has no derivative.
#
# </details>
#
# ## Figure 1, on a small run
#
# The paper's Figure 1 trained the same four-layer CNN on CIFAR-10 with ReLUs and
# with tanh units, each with its own best learning rate and no regularization, and
# counted the epochs to 25% training error. We have no CIFAR-10 offline, so we do the
# nearest thing we can afford: the `tiny` AlexNet preset (eight weight layers, narrow)
# on the bundled Fashion-MNIST subset (5,000 training images), trained with
# `activation='relu'` and with `activation='tanh'`, from the same initial weights,
# on the same batches, without dropout or weight decay. The training loop is the
# project's pieces: `BatchLoader` makes batches, the model does forward and backward,
# `SGD` steps.

# %%
from alexnet import AlexNet
from data.augment import mean_image
from data.datasets import load_dataset
from data.loader import BatchLoader
from training.metrics import topk_correct
from engine.optim import SGD

ds = load_dataset("fashion-mnist-subset")
mean = mean_image(ds.train_x)
STEPS = 20 if SMALL else 400
BATCH = 64


def train_errors(activation, steps, lr, init="he", seed=0):
    """Train for `steps` steps; return the training error of each batch (measured
    before its update) and the trained model."""
    model = AlexNet("tiny", activation=activation, init=init, dropout=0.0, seed=seed)
    opt = SGD(model.params, lr=lr, momentum=0.9, weight_decay=0.0)
    loader = BatchLoader(ds.train_x, ds.train_y, BATCH, seed=seed, mean=mean, pad=2,
                         crop=28, flip=True, prefetch=False)
    errors = []
    while len(errors) < steps:
        for xb, yb in loader:                  # each pass over the loader is one epoch
            logits = model.forward(xb, train=True)
            loss, dlogits = softmax_cross_entropy(logits, yb)
            model.backward(dlogits)
            opt.step(model.grads)
            errors.append(1.0 - topk_correct(logits, yb, 1).mean())
            if len(errors) == steps:
                break
    return np.array(errors), model


curves, models = {}, {}
for act in ["relu", "tanh"]:
    t0 = time.perf_counter()
    curves[act], models[act] = train_errors(act, STEPS, lr=0.02)
    print(f"{act}: {STEPS} steps in {time.perf_counter() - t0:.0f} s")

# %%
def smooth(e, k=25):
    k = min(k, len(e))
    return np.convolve(e, np.ones(k) / k, mode="valid")


fig, ax = plt.subplots(figsize=(7, 3.5))
for act, e in curves.items():
    s = smooth(e)
    ax.plot(np.arange(len(s)) + len(e) - len(s) + 1, 100 * s, label=act)
THRESHOLD = 0.25
ax.axhline(100 * THRESHOLD, color="gray", ls=":", lw=1)
ax.set_xlabel("training step (batch of 64)"), ax.set_ylabel("training error (%), running mean")
ax.set_title("tiny AlexNet on the Fashion-MNIST subset")
ax.legend()
plt.tight_layout()
plt.show()

for act, e in curves.items():
    s = smooth(e)
    hit = np.flatnonzero(s <= THRESHOLD)
    when = f"step {hit[0] + len(e) - len(s) + 1}" if hit.size else f"not within {len(e)} steps"
    print(f"{act}: running training error first <= {THRESHOLD:.0%} at {when}; "
          f"last {len(s) and 100 * s[-1]:.1f}%")

# %% [markdown]
# **In this run the claim does not show.** The printout gives the steps: here the
# tanh network reaches 25% training error about as early as the ReLU one, or earlier,
# and after a few hundred steps the two are level. One run of 400 steps of the `tiny`
# net is the wrong regime for the claim. The effect does appear at a larger scale:
# the recorded runs of notebook 10 trained each network for 20 epochs, three seeds
# each, on three scales, and counted the epochs to 25% training error. Read from
# `experiments/results/SCALE/relu.json`:

# %%
import json

for scale in ("small", "medium", "medium-mini"):
    with open(os.path.join(ROOT, "experiments", "results", scale, "relu.json")) as f:
        claim = json.load(f)
    stats = claim["stats"]
    epochs = {v: stats[v]["epochs_to_25_train_error"] for v in ("relu", "tanh")}
    print(f"{scale:<12} epochs to 25% training error: ReLU {epochs['relu']['mean']:.2f} "
          f"+- {epochs['relu']['std']:.2f}, tanh {epochs['tanh']['mean']:.2f} "
          f"+- {epochs['tanh']['std']:.2f} ({len(epochs['relu']['values'])} seeds): "
          f"{claim['verdict']}")
    print(f"{'':<12} ({claim['scale_desc']})")
    per_seed = np.array(epochs["tanh"]["values"]) - np.array(epochs["relu"]["values"])
    print(f"{'':<12} tanh minus ReLU, seed by seed: "
          + ", ".join(f"{d:+.2f}" for d in per_seed) + " epochs")

# %% [markdown]
# (An epoch count equal to the length of the runs, 8 at the `small` scale, means the
# threshold was not reached: it counts as the budget, a lower bound.)
#
# With the `mini` network on 12,000 images (`medium-mini`), ReLU reaches 25%
# training error in fewer epochs than tanh with every seed: the paper's direction, if
# not its factor of six. The verdict printed beside it is notebook 10's rule, which
# asks more of three seeds (a 95% confidence interval of the difference clear of
# zero); notebook 10 has it, and every claim. With the `tiny` network the order is
# reversed: tanh gets there first on average. The paper's reason
# for the gap is that tanh **saturates**, and saturation depends on how large the
# inputs of the units get. The `tiny` setting keeps them small: pixels scaled to
# $[0, 1]$, the mean image subtracted, and He initialization, which scales every
# layer's weights to its fan-in; a wider network sums more inputs per unit.
#
# Saturation can be measured directly. Run a batch through each trained network and,
# at every activation layer, count the units that pass on **less than a tenth** of the
# gradient they receive: for tanh, $1 - \tanh^2(x) < 0.1$, i.e. $|\tanh(x)| > 0.95$;
# for ReLU, the units at 0 (which pass nothing).

# %%
xb = next(iter(BatchLoader(ds.train_x, ds.train_y, 256, seed=1, mean=mean, prefetch=False)))[0]
fig, ax = plt.subplots(figsize=(7, 3.2))
for k, (act, model) in enumerate(models.items()):
    h, names, blocked = xb, [], []
    for name, layer in model.layers:
        h = layer.forward(h, train=False)
        if name.startswith(act):
            names.append(name[len(act):])
            blocked.append(np.mean(np.abs(h) > 0.95) if act == "tanh" else np.mean(h == 0))
    ax.bar(np.arange(len(names)) + 0.4 * k - 0.2, 100 * np.array(blocked), 0.4, label=act)
    print(f"{act}: units passing < 10% of the gradient, per layer: "
          + ", ".join(f"{100 * b:.0f}%" for b in blocked))
ax.set_xticks(range(len(names)), [f"layer {n}" for n in names])
ax.set_xlabel("activation layer (1-5 after conv1-conv5, 6-7 after fc6-fc7)")
ax.set_ylabel("% of units"), ax.set_title("units passing less than 10% of the gradient")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Almost no tanh unit of the first four layers is saturated, and only a minority of those
# of the last three (conv5, fc6, fc7): tanh passes the gradient nearly everywhere, so it
# has little to lose to ReLU here. The ReLU units at 0 block the
# gradient for well over half of the units, but that is not saturation: a unit that is
# off for one image is on for others, and where it is on it passes the gradient
# undiminished, however large its input. Push the inputs of the tanh units up (raw
# pixel values in 0-255, larger initial weights) and more of them saturate, as in the
# histograms at the top; a ReLU unit's gradient does not shrink as its input grows.

# %% [markdown]
# ## Softmax and cross-entropy
#
# The last layer gives a score (logit) $z_k$ per class. Softmax turns them into
# probabilities, and the loss of an example with label $y$ is the negative log of the
# probability given to the right class:
#
# $$p_k = \frac{e^{z_k}}{\sum_j e^{z_j}}, \qquad
#   L = -\log p_y = -z_y + \log \sum_j e^{z_j}, \qquad
#   \frac{\partial L}{\partial z_k} = p_k - [k = y].$$
#
# The gradient is simply "predicted minus true". Why? Take one example and write
# $L = -z_y + \log S$ with $S = \sum_j e^{z_j}$. The first term depends on $z_k$
# only when $k = y$: its derivative is $-[k = y]$. For the second,
#
# $$\frac{\partial}{\partial z_k} \log S = \frac{1}{S}\,\frac{\partial S}{\partial z_k}
#   = \frac{e^{z_k}}{S} = p_k .$$
#
# Together $\partial L / \partial z_k = p_k - [k = y]$. The loss of a batch is the
# mean over its $N$ examples, so each row of the gradient is divided by $N$. No
# derivative of the softmax itself (a $K \times K$ Jacobian) is ever formed: composed
# with the log, it collapses into this one subtraction.
#
# A network that knows nothing gives
# every class $1/K$, so its loss is $\log K$: 2.30 for 10 classes, 6.91 for the
# paper's 1000. That is the first number to check in any training run.

# %%
logits = np.zeros((4, 10))
loss, dlogits = softmax_cross_entropy(logits, np.array([0, 3, 5, 9]))
print(f"uniform prediction: loss {float(loss):.4f}  (log 10 = {np.log(10):.4f})")
print("gradient of the first example (p - onehot) / N:", dlogits[0])

# %% [markdown]
# ### Why the stable form matters
#
# Written as in the formula, softmax computes $e^{z_k}$. In float32, $e^{89}$ is
# already infinite, and logits of that size happen (a too-large learning rate, an
# unnormalized input). Then $\infty / \infty$ gives NaN and training is lost.
# Subtracting the largest logit first changes nothing mathematically,
#
# $$\frac{e^{z_k}}{\sum_j e^{z_j}} = \frac{e^{z_k - m}}{\sum_j e^{z_j - m}},
#   \qquad m = \max_j z_j ,$$
#
# but every exponent is then $\le 0$, so nothing overflows.

# %%
z = np.array([[100.0, 99.0, 90.0]], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
print("naive  softmax:", naive)
print("stable softmax:", softmax(z))

# %% [markdown]
# The loss has a second trap. Computing $\log p_y$ as `log(softmax(z))[y]` fails when
# $p_y$ is so small that it rounds to 0 (below about $10^{-45}$ in float32): the loss
# becomes $\infty$, though its true value is a perfectly ordinary number.
# `softmax_cross_entropy` never forms $p_y$; it computes the log-sum-exp form
# $\log p_y = (z_y - m) - \log \sum_j e^{z_j - m}$ directly.

# %%
z = np.array([[0.0, -120.0]], dtype=np.float32)   # the right class (1) is very unlikely
with np.errstate(divide="ignore"):
    naive_loss = -np.log(softmax(z)[0, 1])
loss, _ = softmax_cross_entropy(z, np.array([1]))
print(f"p_y = {softmax(z)[0, 1]}  ->  naive loss -log(p_y) = {naive_loss}")
print(f"log-sum-exp loss = {float(loss):.4f}  (the true value: 120 + log(1 + e^-120) = 120)")

big = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
loss, d = softmax_cross_entropy(big, np.array([2]))
print(f"logits of 1e4: loss {float(loss):.1f}, gradient {d[0]} (finite)")

# %% [markdown]
# Finally the gradient check of the loss, with respect to the logits:

# %%
labels = rng.integers(0, 5, size=6)
results = check_loss("softmax_cross_entropy",
                     lambda logits: softmax_cross_entropy(logits, labels),
                     {"logits": rng.standard_normal((6, 5))}, "logits")
print(format_table(results))
assert all(r.passed for r in results)

# %% [markdown]
# ### Exercise 3: softmax cross-entropy and its gradient
#
# Write the mean loss over the batch and its gradient, in the stable form: subtract
# each row's maximum, compute $\log p$ as $(z - m) - \log \sum_j e^{z_j - m}$ (never
# `log(softmax)`), and the gradient as derived above. The check tries small logits,
# logits of $10^4$ and a label whose probability is $e^{-120}$, so the naive forms
# fail it.

# %% tags=["exercise"]
def my_softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits: (N, K); labels: (N,) integers in [0, K).
    Returns (loss, dlogits): loss a number, dlogits (N, K) = (p - onehot) / N.
    """
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_softmax_cross_entropy(my_softmax_cross_entropy)

# %% [markdown]
# **Question.** An untrained network on Fashion-MNIST shows a first loss of 4.5. What
# does that say, and what should it have been?
#
# <details><summary>Answer</summary>
#
# A network that knows nothing should spread its probability evenly, giving
# $\log 10 = 2.30$. A loss well above that means the initial logits are large and
# confidently wrong: the weights (or the inputs) are too large, and the first steps
# will be spent undoing that. Notebook 00 makes this the first sanity check of a run.
#
# </details>
#
# ## What to remember
#
# - tanh saturates: for inputs beyond about $\pm 3$ its derivative is under 0.01 and
#   the gradient stops. ReLU passes the gradient unchanged wherever it is active.
# - Whether that makes training faster depends on how many units saturate, and so on
#   the scale of the inputs, the initialization and the learning rate (see the run
#   above).
# - Softmax + cross-entropy has the gradient $p - \text{onehot}(y)$; compute it with
#   the max subtracted and the log-sum-exp form, or large logits turn into NaN and
#   unlikely labels into an infinite loss.
