# %% [markdown]
# # 11. Learning: SGD, weight decay and the initialization
#
# Section 5 of the paper ("Details of learning") is one paragraph and one formula, and
# every number in it matters:
#
# - stochastic gradient descent on batches of 128 examples, momentum 0.9, weight decay
#   0.0005, with the update
#
#   $$v \leftarrow 0.9\, v - 0.0005\,\epsilon\, w - \epsilon\, \frac{\partial L}{\partial w},
#     \qquad w \leftarrow w + v;$$
#
# - weights drawn from a Gaussian with mean 0 and standard deviation 0.01; biases 1 in
#   conv2, conv4, conv5, fc6 and fc7 ("this initialization accelerates the early stages
#   of learning by providing the ReLUs with positive inputs"), 0 elsewhere;
# - learning rate $\epsilon = 0.01$, divided by 10 whenever the validation error stopped
#   improving, three times before the end.
#
# This notebook takes them one at a time, with the project's own optimizer
# (`engine/optim.py`) and network (`alexnet.py`):
#
# 1. the update rule, checked by hand;
# 2. what momentum buys, on a two-weight problem you can see;
# 3. what weight decay does to a weight that no gradient holds up;
# 4. why the paper's initialization leaves our small networks at chance (the
#    initialization claim of notebook 10), layer by layer;
# 5. the learning-rate schedule, in the curves of two full Fashion-MNIST runs.
#
# You write the update and He's initialization yourself, into the stubs of the cells
# tagged `exercise`; the cell under each checks yours and prints `PASS`, `FAIL` (with
# where) or `not written yet`. Reference solutions:
# `notebooks/solutions/11_sgd_and_initialization.py`.

# %%
import json
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
from data.augment import mean_image
from data.datasets import load_dataset
from data.loader import BatchLoader, iterate_eval
from engine.optim import SGD
from layers.loss import softmax_cross_entropy

print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## 1. The update rule
#
# `SGD` keeps one velocity $v$ per parameter, starting at zero. Weight decay is folded
# into the velocity: it is the gradient of an L2 penalty
# $\tfrac{1}{2}\lambda \lVert w \rVert^2$ added to the loss, $\lambda w$, times the
# learning rate. Three steps of the optimizer against the formula written out by hand,
# on a small random parameter with made-up gradients:

# %%
rng = np.random.default_rng(0)
w0 = rng.standard_normal(5)
grads = [rng.standard_normal(5) for _ in range(3)]
lr, momentum, wd = 0.01, 0.9, 0.0005

params = {"w": w0.copy()}
opt = SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
w, v = w0.copy(), np.zeros(5)                  # by hand
for t, g in enumerate(grads, start=1):
    opt.step({"w": g})
    v = momentum * v - wd * lr * w - lr * g
    w = w + v
    print(f"step {t}: optimizer w {params['w']}, by hand {w}, "
          f"largest difference {np.abs(params['w'] - w).max():.1e}")

# %% [markdown]
# ### Exercise 1: one step of the paper's SGD
#
# Write the update as the paper does: the new velocity from the old one, the weight
# decay and the gradient, then the new weight. Return both, without changing the
# arrays you are given in place (the check calls your function five times in a row
# and compares each step with `SGD`).

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py).
import numpy as np
from notebooks.exercises import check_he_std, check_sgd_step

# %% tags=["exercise"]
def my_sgd_step(w, g, v, lr, momentum, weight_decay):
    """One step: returns (w, v) after it. w, g, v: arrays of one shape; the rest numbers."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_sgd_step(my_sgd_step)

# %% [markdown]
# The same to the last bit: the optimizer does the formula's operations in the
# formula's order (on the CPU it splits each large parameter into pieces for the
# threads, and on the GPU it can update every parameter as one buffer, and both keep
# that order; `tests/test_optim.py` checks them).
#
# Unrolled, the velocity is a running sum of past gradients with weights
# $1, 0.9, 0.81, \ldots$, whose total is $1/(1 - 0.9) = 10$. A gradient that stays the
# same for many steps therefore moves $w$ by about $10\,\epsilon$ times that gradient per
# step:
# with momentum 0.9 the **effective learning rate** along a steady direction is ten
# times $\epsilon$. Where the gradient keeps changing sign, the terms cancel instead.
#
# ## 2. What momentum buys
#
# A loss you can draw: $L(w) = \tfrac{1}{2}(w_1^2 + 100\, w_2^2)$, a valley 100 times
# steeper across ($w_2$) than along ($w_1$). Plain gradient descent needs a learning
# rate below 2 over the largest curvature, $2/100 = 0.02$, or it diverges across the
# valley; at 0.015 it creeps along the floor: $w_1$ shrinks by a factor
# $1 - \epsilon$ per step. The loss
# surfaces of deep networks have such directions, with curvatures that differ by far
# more than 100.

# %%
CURV = np.array([1.0, 100.0])
STEPS = 100


def descend(lr, momentum, steps=STEPS):
    """The path of the project's SGD on L(w) = (w1^2 + 100 w2^2) / 2, from (-4, 1)."""
    p = {"w": np.array([-4.0, 1.0])}
    opt = SGD(p, lr=lr, momentum=momentum, weight_decay=0.0)
    path = [p["w"].copy()]
    for _ in range(steps):
        opt.step({"w": CURV * p["w"]})          # the gradient of L
        path.append(p["w"].copy())
    path = np.array(path)
    return path, 0.5 * (CURV * path ** 2).sum(axis=1)


runs = {"plain, lr 0.015": descend(0.015, 0.0),
        "momentum 0.9, lr 0.015": descend(0.015, 0.9),
        "momentum 0.9, lr 0.0015": descend(0.0015, 0.9)}

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
g1, g2 = np.meshgrid(np.linspace(-4.5, 4.5, 300), np.linspace(-1.2, 1.2, 200))
ax0.contour(g1, g2, 0.5 * (g1 ** 2 + 100 * g2 ** 2), levels=np.geomspace(0.01, 80, 12),
            colors="0.8", linewidths=0.8)
for (label, (path, loss)), color in zip(runs.items(), ["C3", "C0", "C2"]):
    ax0.plot(path[:40, 0], path[:40, 1], ".-", color=color, ms=3, lw=0.8, label=label)
    ax1.semilogy(loss, color=color, label=label)
    print(f"{label:24s}: loss {loss[0]:.0f} -> {loss[25]:.3g} after 25 steps, "
          f"{loss[-1]:.2g} after {STEPS}")
ax0.set_xlabel("$w_1$ (shallow)"), ax0.set_ylabel("$w_2$ (steep)")
ax0.set_title("the first 40 steps from (-4, 1)")
ax1.set_xlabel("step"), ax1.set_ylabel("loss"), ax1.legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Plain descent (red) settles across the valley at once and then crawls along it. With
# momentum (blue) the steps along the valley add up in the velocity: the path
# overshoots, swings past the minimum and back, and its loss jumps up and down, but
# after 100 steps that loss is thousands of times lower than plain descent's (the
# swings show that 0.9 is more momentum than this two-weight problem needs). Momentum
# with a
# learning rate ten times smaller (green) is about plain descent again: the effective
# learning rate $\epsilon / (1 - 0.9)$ is the same, and so is the crawl. What momentum
# buys is a larger step along the shallow directions than the steep ones allow on their
# own.
#
# ## 3. What weight decay does
#
# The paper remarks that its small weight decay "is not merely a regularizer: it
# reduces the model's training error". Its size is easy to misjudge, because it is
# multiplied by the learning rate and then amplified by momentum. Take a weight that no
# gradient holds up (the data never pushes on it) and run the optimizer with the
# paper's settings:

# %%
lr, momentum, wd = 0.01, 0.9, 0.0005
p = {"w": np.ones(1)}
opt = SGD(p, lr=lr, momentum=momentum, weight_decay=wd)
STEPS_PER_EPOCH = 10_000                      # ImageNet: 1.2 million images / 128
trace = [1.0]
for _ in range(STEPS_PER_EPOCH):
    opt.step({"w": np.zeros(1)})
    trace.append(float(p["w"][0]))
rate = wd * lr / (1 - momentum)               # per step, once the velocity has built up
print(f"after one ImageNet epoch ({STEPS_PER_EPOCH:,} steps) the weight is {trace[-1]:.4f}; "
      f"exp(-{STEPS_PER_EPOCH:,} x {rate:.0e}) = {np.exp(-STEPS_PER_EPOCH * rate):.4f}")

fig, ax = plt.subplots(figsize=(6.5, 3))
ax.plot(trace, label="the optimizer")
ax.plot(np.exp(-np.arange(STEPS_PER_EPOCH + 1) * rate), "--",
        label=r"$e^{-t\,\lambda\epsilon/(1-\mu)}$")
ax.set_xlabel("step"), ax.set_ylabel("weight"), ax.legend()
ax.set_title("a weight with no gradient, the paper's settings")
plt.tight_layout()
plt.show()

# %% [markdown]
# Each step takes $\lambda\epsilon = 5 \times 10^{-6}$ of the weight into the velocity,
# and momentum makes that ten times larger, $5 \times 10^{-5}$ per step: a weight the
# data does not support loses about 40% of its size per ImageNet epoch, and over the
# paper's 90 epochs it would vanish. Weight decay is a steady pull of every weight
# towards zero that only the gradients of the data can resist, so the network keeps the
# weights that earn their place. That it lowered the paper's *training* error too is
# a remark about optimization rather than overfitting; the paper gives no reason for
# it.
#
# ## 4. The initialization, layer by layer
#
# The paper draws every weight from $\mathcal{N}(0, 0.01^2)$, whatever the layer's size,
# and sets the biases of conv2, conv4, conv5, fc6 and fc7 to 1. A unit's output before
# the ReLU is a sum over its fan-in $n$ (input channels times kernel area); with
# weights of standard deviation $\sigma$ and inputs of root-mean-square size $x$ it has
# a standard deviation of about $\sigma \sqrt{n}\, x$. The ReLU then zeroes about half
# of it, so a layer and its ReLU multiply the size of the signal by about
# $\sigma\sqrt{n/2}$: with the paper's $\sigma = 0.01$, 0.035 for the `mini` net's conv1
# ($n = 25$) and 0.28 for its conv2 ($n = 1{,}600$). He initialization (He et al.,
# 2015) picks $\sigma = \sqrt{2/n}$ for each layer, which makes that factor 1. This
# project's `--init he` also sets the biases that the paper sets to 1 to 0.1 instead,
# as Caffe's reference AlexNet (`bvlc_alexnet`, the model the Caffe framework
# published) did, so the comparison below changes both.
#
# ### Exercise 2: He's standard deviation
#
# Given a weight array's shape, return $\sqrt{2/n}$, with $n$ the fan-in: the number
# of inputs each output unit sums. A fully connected weight is (out, in); a conv
# weight is (F, C/groups, KH, KW), so the two-GPU split of conv2, conv4 and conv5
# halves their fan-in. The check runs your function on every weight of the `paper`
# and `mini` nets.

# %% tags=["exercise"]
def my_he_std(shape):
    """He's standard deviation for a weight of this shape (a tuple)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_he_std(my_he_std)

# %% [markdown]
# **Question.** Why $\sqrt{2/n}$ and not $\sqrt{1/n}$, which keeps the variance of a
# sum of $n$ unit-variance inputs at 1?
#
# <details><summary>Answer</summary>
#
# The ReLU after the layer zeroes the negative half of its output, which halves the
# mean square of what the next layer receives. $\sqrt{1/n}$ (Xavier/Glorot, for tanh)
# would let the signal shrink by $\sqrt 2$ per ReLU layer, a factor of 16 over eight
# layers; the 2 gives the halving back.
#
# </details>
#
# A bias of 1 keeps the ReLUs on, as the paper intended, but it is the **same** for
# every image. What a layer passes on has two parts: a part that is the same for every
# image, and a part that depends on the image. Only the second can tell a shirt from a
# shoe. For each conv and fc layer we measure, on its output before the ReLU, the share
# of the output's size that depends on the image,
# $\lVert h - \bar h \rVert / \lVert h \rVert$ (a ratio of norms, so of RMS sizes), with
# $\bar h$ the layer's mean output over a batch of 256 Fashion-MNIST images; dropout is
# off, to see the initialization alone. Three set-ups of the `mini` net:
#
# - the paper's initialization with this project's pixels, 0 to 1 minus the mean image;
# - the paper's initialization with the paper's pixels, 0 to 255 minus the mean image
#   (`--raw-pixels`);
# - He initialization with pixels 0 to 1 (what the project's runs use).
#
# The printout gives each layer's output size (RMS) and that share, then how large the
# first batch's weight gradient is next to the weights.

# %%
ds = load_dataset("fashion-mnist-subset")
SETUPS = [("paper init, pixels 0-1", "paper", 1 / 255),
          ("paper init, pixels 0-255", "paper", 1.0),
          ("He init, pixels 0-1", "he", 1 / 255)]
WATCH = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def signal(init, scale, n=256, seed=0):
    """Per watched layer: (RMS of the output, its image-dependent share), the loss, and
    each weight's gradient size relative to the weight, for one batch at initialization."""
    model = AlexNet("mini", init=init, dropout=0.0, seed=seed, dtype=np.float64)
    mean = mean_image(ds.train_x, scale=scale)
    xb, yb = next(iter(iterate_eval(ds.train_x[:n], ds.train_y[:n], n, mean=mean,
                                    scale=scale)))
    h, stats = xb.astype(np.float64), {}
    for name, layer in model.layers:
        h = layer.forward(h, True)
        if name in WATCH:
            f = h.reshape(len(h), -1)
            stats[name] = (np.sqrt(np.mean(f ** 2)),
                           np.linalg.norm(f - f.mean(axis=0)) / np.linalg.norm(f))
    loss, dlogits = softmax_cross_entropy(h, yb)
    model.backward(dlogits)
    rel = {name: np.linalg.norm(model.grads[name + ".w"]) / np.linalg.norm(model.params[name + ".w"])
           for name in WATCH}
    return stats, float(loss), rel


results = {label: signal(init, scale) for label, init, scale in SETUPS}
print(f"{'layer':6s}" + "".join(f"{label:>34s}" for label in results))
print(f"{'':6s}" + "".join(f"{'output RMS  image share':>34s}" for _ in results))
for name in WATCH:
    print(f"{name:6s}" + "".join(f"{stats[name][0]:>22.3g}{stats[name][1]:>12.1e}"
                                 for stats, _, _ in results.values()))
print("the first batch's weight gradient relative to the weight, |dL/dw| / |w|:")
for name in WATCH:
    print(f"{name:6s}" + "".join(f"{rel[name]:>34.1e}" for _, _, rel in results.values()))
for label, (_, loss, _) in results.items():
    print(f"{label}: loss at initialization {loss:.3f} (chance: ln 10 = {np.log(10):.3f})")

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
for (label, (stats, _, rel)), color in zip(results.items(), ["C3", "C1", "C0"]):
    ax0.semilogy(WATCH, [stats[n][1] for n in WATCH], "o-", color=color, label=label)
    ax1.semilogy(WATCH, [rel[n] for n in WATCH], "o-", color=color, label=label)
ax0.set_ylabel("image-dependent share of the output")
ax0.set_title("what reaches each layer from the image")
ax1.set_ylabel(r"$|\partial L/\partial w| \,/\, |w|$ (norms)")
ax1.set_title("how hard the first batch pushes each layer's weights")
for ax in (ax0, ax1):
    ax.grid(alpha=0.3)
    ax.set_xlabel("layer (output before its ReLU)")
ax0.legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the left plot from left to right. conv1's output depends entirely on the image
# (its bias starts at 0, and its input is the image minus the mean image), but with
# pixels 0 to 1 the paper's weights make it small (the RMS column: about 0.01). conv2
# then adds its bias of 1 to that, so its output is almost all bias, the same for
# every image; conv4 and conv5 add more bias; by fc7 only about
# $10^{-5}$ of what the network carries comes from the image. Every image gets nearly
# the same logits, and the gradients that reach the convolutions are tiny next to
# their weights (right plot; conv2's is smallest of all, behind that bias). At the
# paper's learning rate of 0.01 a step changes conv2's weights by about 0.1 parts per
# million of their size, conv3's and conv4's by about 10 (momentum makes that about ten
# times more once it builds up).
#
# With the paper's pixel values (orange), conv1 starts 255 times larger, and the image
# keeps a few tenths of a percent of the signal in the last layers: about 200 times
# more, but still small next to the biases. In the paper's own network conv1 sees
# $11 \times 11 \times 3 = 363$ inputs instead of 25, so with inputs of the same size its
# output would start about four times larger ($\sqrt{363/25} \approx 3.8$), and that
# network did learn from this initialization, on 0-255 pixels. He initialization
# (blue) keeps the image's share above 20% in every layer, and its gradients from
# conv1 to fc7 lie within a factor
# of about 15 of each other (the paper's, with pixels 0 to 1: a factor of about 5,000).
#
# Does it matter once training starts? A few hundred steps with each set-up, at the
# learning rate 0.02 this project's claims use, on the bundled subset; with the `tiny`
# net this time (every layer of `mini`, narrower), so that the three runs take about a
# minute:

# %%
train_x, train_y = ds.train_x, ds.train_y
STEPS_TRAIN = 30 if SMALL else 300


def dead_fc7(model, mean, scale, n=256):
    """The share of fc7's ReLUs that output 0 for every one of n training images."""
    xb, _ = next(iter(iterate_eval(train_x[:n], train_y[:n], n, mean=mean, scale=scale)))
    return float((model.forward(xb, train=False, until="relu7").max(axis=0) <= 0).mean())


def loss_curve(init, scale, steps=STEPS_TRAIN, seed=0):
    """Training losses per step, and the share of dead fc7 units before and after."""
    model = AlexNet("tiny", init=init, seed=seed)
    opt = SGD(model.params, lr=0.02, momentum=0.9, weight_decay=0.0005)
    mean = mean_image(train_x, scale=scale)
    dead_before = dead_fc7(model, mean, scale)
    loader = BatchLoader(train_x, train_y, 128, seed=seed, mean=mean, scale=scale,
                         pad=2, crop=28, flip=True, prefetch=False)
    losses, epoch = [], 0
    while len(losses) < steps:
        for xb, yb in loader.iterate(epoch):
            loss, dlogits = softmax_cross_entropy(model.forward(xb, train=True), yb)
            model.backward(dlogits, input_grad=False)
            opt.step(model.grads)
            losses.append(float(loss))
            if len(losses) == steps:
                break
        epoch += 1
    return np.array(losses), dead_before, dead_fc7(model, mean, scale)


curves = {}
for label, init, scale in SETUPS:
    t0 = time.perf_counter()
    curves[label], dead0, dead1 = loss_curve(init, scale)
    print(f"{label}: loss {curves[label][:10].mean():.3f} over the first 10 steps, "
          f"{curves[label][-10:].mean():.3f} over the last 10 ({time.perf_counter() - t0:.0f} s); "
          f"fc7 units that are 0 for all of 256 images: {100 * dead0:.0f}% at the start, "
          f"{100 * dead1:.0f}% at the end")

fig, ax = plt.subplots(figsize=(7.5, 3.6))
for (label, c), color in zip(curves.items(), ["C3", "C1", "C0"]):
    smooth = np.convolve(c, np.ones(10) / 10, mode="valid")
    ax.plot(np.arange(len(smooth)) + 10, smooth, color=color, label=label)
ax.axhline(np.log(10), color="0.5", ls=":", label="chance, ln 10")
ax.set_xlabel("step (batches of 128)"), ax.set_ylabel("training loss, mean of 10 steps")
ax.set_title(f"tiny AlexNet, bundled Fashion-MNIST subset, lr 0.02, {STEPS_TRAIN} steps")
ax.legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# With He initialization the loss leaves ln 10 within the first few dozen steps; with
# the paper's it stays there in both pixel units (the red curve lies under the orange
# one). The printout says what happened meanwhile: after 300 steps nearly every fc7
# unit outputs 0 for every image. Since fc7's input is nearly the same for every image,
# each of its units is on for all images or off for all of them, and every update
# moves it the same way for all. SGD fits the one thing it can see, how often each
# class occurs (equally often here, hence a loss of ln 10), and on the way fc7's units
# went below zero for every image. A ReLU that is 0 for every image passes no gradient
# back, to its weights or to anything below it, so it stays off and nothing below it
# can learn any more. With He initialization, 24% of fc7's units start off (0 for all
# 256 images) and 2% are left after the 300 steps. The claims' runs of notebook 10 say
# the same over 20 epochs: with the paper's initialization the `tiny` and `mini` nets
# never reached 25% training error and ended at 90% test error (chance), with pixels
# 0 to 1 and 0 to 255, while He initialization trained (`python -m experiments init`).
# That is why every training run of this project passes `--init he`, the documented
# alternative in the README. The paper's own net, with 227x227 colour images, larger
# fan-ins and 0 to 255 pixels, did learn from the paper's initialization; Caffe's
# reference model still changed the biases of 1 to 0.1 because 1 gave it a flat loss
# (`--init caffe`).
#
# ## 5. The learning-rate schedule
#
# The paper divided the learning rate by 10 "when the validation error rate stopped
# improving with the current learning rate", three times in 90 epochs. `train.py` does
# the same: `--lr-patience N` divides it after N epochs without a new best validation
# error (2 by default), at most `--max-lr-drops` times (3). The records of two runs on
# the full Fashion-MNIST (the `mini` net, 54,000 training images, 6,000 for
# validation) are committed; their training and validation error per epoch, and where
# the learning rate was divided:

# %%
RUNS = [("headline: lr 0.01, patience 2", "headline"),
        ("lr 0.02, patience 4", "headline-lr02-patience4")]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, (label, folder) in zip(axes, RUNS):
    with open(os.path.join(ROOT, "experiments", "results", folder, "metrics.json")) as f:
        m = json.load(f)
    h = m["history"]
    ep = [e["epoch"] for e in h]
    ax.plot(ep, [100 * e["train_top1_error"] for e in h], color="C1",
            label="training error (dropout, augmentation on)")
    ax.plot(ep, [100 * e["val_top1_error"] for e in h], color="C0", label="validation error")
    drops = [e["epoch"] for prev, e in zip(h, h[1:]) if e["lr"] < prev["lr"]]
    for d in drops:
        ax.axvline(d - 0.5, color="0.6", ls="--", lw=0.8)
    ax.set_title(f"{label}: test {100 * m['test_top1_error']:.2f}% (ten crops)", fontsize=10)
    ax.set_xlabel("epoch (dashed: lr divided by 10 before it)")
    ax.set_ylim(0, 35)
    print(f"{label}: lr {h[0]['lr']} divided by 10 before epochs {drops}; best validation "
          f"error {100 * m['best_val_top1_error']:.2f}% at epoch {m['best_epoch']}")
axes[0].set_ylabel("top-1 error (%)"), axes[0].legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# The first drop is a clear step down in both curves (validation error 9.17% to 8.23%
# in the left run, 8.48% to 7.72% in the right): with a large learning rate the weights
# bounce around a valley floor (the noise of 128-image batches), and a ten times
# smaller one lets them settle lower. The second drop gives a little more (0.05 and
# 0.55 points of validation error); the third came one epoch before the end in both
# runs and changed nothing. The two runs differ in three ways, so the gap between them
# (7.71% against 6.89% test error, one seed each; docs/RESULTS.md has both) is not the
# patience's alone: the right one started at lr 0.02 instead of 0.01, waited 4 epochs
# without a new best before each drop instead of this project's default of 2 (the
# paper gives no number), and ran 40 epochs instead of 25. The left run's first drop
# came while its training error was still falling by 0.1 to 0.5 points an epoch.
#
# A plateau-driven schedule needs a validation set and time to see the plateau. A run
# that must fit a time budget cannot wait for one: `--lr-drops 0.5,0.7` divides the
# learning rate at fixed points instead, after 50% and 70% of the epochs. Smoother
# schedules, such as a cosine fall towards 0 (Loshchilov & Hutter 2017; not in the
# paper), were measured in the headline attempts. This cell reads their rows from
# docs/RESULTS.md (the ten-crop test error, then the centre crop):

# %%
import re

with open(os.path.join(ROOT, "docs", "RESULTS.md"), encoding="utf-8") as f:
    results_md = f.read()
ATTEMPTS = [("lr02-drops-20ep", "20 epochs, lr 0.02, divided by 10 at 50% and 70%, seed 1"),
            ("lr02-drops-swa-20ep-seed0", "the same, seed 0, with weight averaging"),
            ("cosine-20ep-seed2", "20 epochs, lr 0.02 on one cosine towards 0, seed 2"),
            ("restart-cosine-43ep-seed0", "a 20-epoch seed-0 run, then 23 epochs on a second cosine"),
            ("restart-cosine-39ep-seed2", "the cosine run above, then 19 epochs on a second cosine"),
            ("lr02-patience4", "40 epochs, lr 0.02, the paper's drops on a plateau (the right plot)")]
attempt_error = {}
for name, what in ATTEMPTS:
    m = re.search(rf'^\| ([0-9.]+)% \| ([0-9.]+)% \| <a id="headline-{re.escape(name)}"></a>',
                  results_md, flags=re.M)
    attempt_error[name] = float(m.group(1))
    print(f"{m.group(1)}% ten crops, {m.group(2)}% centre: {what} ({name})")

# %% [markdown]
# Over 20 epochs, the one cosine run ended below the two with fixed drops. But each is
# one run of one seed, and a seed alone moves a 20-epoch network's error by a few
# tenths of a point here (notebook 10 measures seed spreads), so one run shows no
# more than that the cosine is no worse. Run on for another 20 epochs on a second
# cosine (a warm restart), the networks did better, but no better than the 40-epoch run
# with the paper's drops on a plateau (the right plot above): what the longer runs
# gained came with the epochs, not the cosine. `train.py` has kept the paper's drops
# (on a plateau, or at fixed points) and no longer offers the cosine.
#
# ## What to remember
#
# - The update: $v \leftarrow \mu v - \lambda\epsilon w - \epsilon g$,
#   $w \leftarrow w + v$. With $\mu = 0.9$ the effective learning rate along a steady
#   direction is $10\,\epsilon$, and momentum lets the shallow directions of the loss
#   move at a step the steep ones would not allow alone.
# - Weight decay, $\lambda = 0.0005$, pulls every weight towards zero by
#   $\lambda\epsilon/(1-\mu) = 5 \times 10^{-5}$ per step: about 40% per ImageNet
#   epoch for a weight the data does not hold up.
# - An initialization has to keep the image's part of the signal alive through every
#   layer. The paper's net trained from $\mathcal{N}(0, 0.01^2)$ with biases of 1, on
#   0-255 pixels; on our small nets it drowns the image in the biases, with pixels 0-1
#   or 0-255, and He initialization, scaled to each layer's fan-in, is the fix.
# - Divide the learning rate by 10 when the validation error stops improving; how long
#   to wait before each drop changes the result.
