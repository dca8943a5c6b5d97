# %% [markdown]
# # 5. Dropout
#
# AlexNet has 60 million parameters and overfits the 1.2 million training images
# without help. Besides data augmentation (notebook 7), the paper uses **dropout**
# (Section 4.2): during training each hidden unit of fc6 and fc7 is set to zero with
# probability $p = 0.5$, a new random choice for every example. A unit cannot rely on
# any particular other unit being there, so it has to learn features that are useful
# on their own. At test time every unit is kept.
#
# This notebook shows training against test behaviour, the paper's form against the
# "inverted" form everyone uses now, a gradient check, and what dropout does to a small
# network that overfits, and where the recorded runs of this project show an effect
# and where they do not. The code is `layers/dropout.py`.
#
# You write both forms of dropout into the stubs of the cells tagged `exercise`; the
# cell under each checks yours against `dropout_forward` with the same mask and
# prints `PASS`, `FAIL` (with where) or `not written yet`. Reference solutions:
# `notebooks/solutions/05_dropout.py`.

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
np.set_printoptions(precision=3, suppress=True, linewidth=110)

from engine.gradcheck import check_op, format_table
from layers.dropout import dropout_backward, dropout_forward

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## Two forms, equal in expectation
#
# With a mask $r_i \sim \text{Bernoulli}(1 - p)$ (1 keeps the unit):
#
# | | training | test |
# |---|---|---|
# | the paper's form (`mode="paper"`) | $y = r \odot x$ | $y = (1 - p)\, x$ |
# | inverted dropout (`mode="inverted"`, the default) | $y = r \odot x / (1 - p)$ | $y = x$ |
#
# Both make the test-time output equal to the **expected** training-time output:
# $\mathbb{E}[r_i] = 1 - p$. The paper scales at test time ("multiply their outputs by
# 0.5"); inverted dropout scales at training time, so that the test-time network is
# the plain network, and features (fc7, notebook 8) or exported weights need no
# knowledge of $p$. PyTorch and Caffe use the inverted form.

# %%
x = np.ones((12, 40))
fig, axes = plt.subplots(2, 2, figsize=(10, 4.2))
for row, mode in enumerate(["paper", "inverted"]):
    train_out, _ = dropout_forward(x, p=0.5, train=True, mode=mode, seed=1)
    test_out, _ = dropout_forward(x, p=0.5, train=False, mode=mode)
    for ax, y, when in [(axes[row, 0], train_out, "training"), (axes[row, 1], test_out, "test")]:
        im = ax.imshow(y, cmap="Greens", vmin=0, vmax=2)
        ax.set_title(f"{mode} form, {when}: values {sorted(set(np.unique(y).tolist()))}", fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
axes[1, 0].set_xlabel("unit"), axes[1, 0].set_ylabel("example")
fig.colorbar(im, ax=axes, fraction=0.02, label="output value (input all ones)")
plt.show()

# %% [markdown]
# ### Exercises 1 and 2: both forms
#
# Write the table above. You get the mask as `keep`, a boolean array shaped as `x`
# (True where the unit is kept, drawn with probability $1 - p$), so that the check
# can hand the same mask to `dropout_forward`; `train` says which column of the table
# applies.

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py).
import numpy as np
from notebooks.exercises import check_dropout_inverted, check_dropout_paper

# %% tags=["exercise"]
def my_dropout_paper(x, keep, p, train):
    """The paper's dropout. x: any shape; keep: bool, shaped as x; p: the drop probability."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_dropout_paper(my_dropout_paper)

# %% tags=["exercise"]
def my_dropout_inverted(x, keep, p, train):
    """Inverted dropout, same arguments."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_dropout_inverted(my_dropout_inverted)

# %% [markdown]
# **Question.** What goes wrong if inverted dropout forgets to divide by $1 - p$ at
# training time?
#
# <details><summary>Answer</summary>
#
# During training the next layer sees, on average, $1 - p$ times the activity it will
# see at test time (half, with $p = 0.5$), and its weights and biases are fitted to
# that. At test time every unit is kept and nothing is scaled, so the next layer gets
# twice the input it was trained on; each layer after it passes the error on, and the
# logits come out too large (over-confident) and wrong. The loss during training
# looks normal: the bug shows only in the test error. The check above fails it.
#
# </details>
#
# Averaging many training-time outputs of the same input gives the test-time output,
# in both forms:

# %%
x = rng.random((1, 200)) * 3                       # some positive activations
draws = 500 if SMALL else 5000
gen = np.random.default_rng(7)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for ax, mode in zip(axes, ["paper", "inverted"]):
    mean_train = np.mean([dropout_forward(x, 0.5, True, mode, rng=gen)[0] for _ in range(draws)],
                         axis=0)
    test_out, _ = dropout_forward(x, 0.5, False, mode)
    ax.plot(test_out[0], mean_train[0], ".", ms=4)
    lim = [0, test_out.max() * 1.05]
    ax.plot(lim, lim, color="gray", lw=0.8)
    ax.set_xlabel("test-time output"), ax.set_ylabel(f"mean of {draws} training outputs")
    ax.set_title(f"{mode} form: largest gap {np.abs(mean_train - test_out).max():.3f}", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# The two forms are the same network, up to a factor $1 - p$ that the next layer's
# weights absorb. With the same mask, the inverted output is the paper's divided by
# $1 - p$, at training and at test time alike. So a layer after the paper's dropout with
# weights $W$ computes exactly what a layer after inverted dropout computes with weights
# $(1 - p)\,W$:

# %%
from layers.linear import linear_forward

x = rng.standard_normal((4, 10))
W, b = rng.standard_normal((3, 10)), rng.standard_normal(3)
for train in (True, False):
    paper_out, _ = dropout_forward(x, 0.5, train, "paper", seed=3)
    inv_out, _ = dropout_forward(x, 0.5, train, "inverted", seed=3)
    logits_paper, _ = linear_forward(paper_out, W, b)
    logits_inv, _ = linear_forward(inv_out, 0.5 * W, b)
    print(f"{'training' if train else 'test':>8}: inverted = paper / (1 - p): "
          f"{np.allclose(inv_out, paper_out / 0.5)};  next layer's outputs equal: "
          f"{np.allclose(logits_paper, logits_inv)}")

# %% [markdown]
# ## The backward pass, and its check
#
# The mask is a constant of the forward pass, so the backward multiplies by the same
# mask: $\partial L / \partial x = r \odot \partial L / \partial y$ (divided by $1-p$
# in the inverted form). A gradient check needs the **same** mask in every forward
# pass it makes, so the mask comes from a fixed seed. In the network, the `Dropout`
# layer's mask is keyed by (seed, call number), which makes runs reproducible and
# resumable (below, where the random numbers come from).

# %%
results = []
for mode in ("inverted", "paper"):
    for train in (True, False):
        results += check_op(f"dropout ({mode}, {'training' if train else 'test'})",
                            dropout_forward, dropout_backward, {"x": rng.standard_normal((4, 10))},
                            ["x"], {"p": 0.5, "seed": 1, "mode": mode, "train": train})
print(format_table(results))
assert all(r.passed for r in results)

# %% [markdown]
# ## Where the random numbers come from
#
# A seeded mask does not need a random-number generator with a state that steps
# forward. `layers/dropout.py: counter_bits` gives each unit $i$ the bits of a hash
# of (seed, $i$): the counter $i$ is spread over 32 bits, the seed's two keys are mixed
# in, and a scramble of xor-shifts and multiplications by odd constants (each a
# bijection of 32-bit numbers) makes every output bit depend on every input bit. A
# unit is kept when its 32 bits, read as a number, are at least $p \cdot 2^{32}$.
# This is the idea of the counter-based generators (Philox) that GPU libraries use:
# nothing is built or stored per batch, the mask of call $t$ is available without
# drawing those of calls $0 \ldots t-1$, and because it is plain integer arithmetic
# on arrays, NumPy and CuPy give the same bits, so a run on the CPU and on a GPU drop
# the same units. (With a fresh CuPy generator per batch, which this replaced, the
# layer's forward took 0.65 ms of GPU time on an H200, most likely spent initializing
# the generator's state, one per GPU thread.)

# %%
from layers.dropout import counter_bits, keep_mask

bits = counter_bits((1 << 16,), [7, 0], np)
print("first bits:", [f"{b:032b}" for b in bits[:2]])
print("each of the 32 bits is 1 in this fraction of the units:",
      ((bits[:, None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0).round(3))
m0, m1 = keep_mask((256, 256), 0.5, [7, 0], np), keep_mask((256, 256), 0.5, [7, 1], np)
print(f"kept: {m0.mean():.4f} (p = 0.5); the next call agrees with this one on "
      f"{(m0 == m1).mean():.4f} of the units (independent masks: 0.5)")
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
for ax, m, t in zip(axes, (m0, m1), (0, 1)):
    ax.imshow(m[:64, :64], cmap="gray"), ax.set_title(f"mask of call {t}"), ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What dropout does to overfitting
#
# A small experiment: the `tiny` AlexNet preset, trained on only
# 1,000 images of the Fashion-MNIST subset, with no augmentation (no crops,
# no reflections) and no weight decay, so that nothing but dropout stands between the
# network and memorizing its training set. Once with dropout $p = 0.5$ on fc6 and fc7,
# once with $p = 0$. After each epoch both are evaluated in test mode on their
# training images and on 500 test images.

# %%
from alexnet import AlexNet
from data.augment import mean_image
from data.datasets import load_dataset
from data.loader import BatchLoader, iterate_eval
from training.metrics import topk_error
from engine.optim import SGD
from layers.loss import softmax_cross_entropy

ds = load_dataset("fashion-mnist-subset")
N_TRAIN, N_TEST = (200, 200) if SMALL else (1000, 500)
EPOCHS = 2 if SMALL else 30
pick = np.random.default_rng(0).permutation(len(ds.train_x))[:N_TRAIN]
train_x, train_y = ds.train_x[pick], ds.train_y[pick]
pick = np.random.default_rng(1).permutation(len(ds.test_x))[:N_TEST]
test_x, test_y = ds.test_x[pick], ds.test_y[pick]
mean = mean_image(train_x)


def error(model, x, y):
    scores = np.concatenate([model.forward(xb, train=False)
                             for xb, _ in iterate_eval(x, y, 500, mean=mean)])
    return topk_error(scores, y, 1)


def run(dropout, epochs, lr=0.02, seed=0):
    model = AlexNet("tiny", init="he", dropout=dropout, seed=seed)
    opt = SGD(model.params, lr=lr, momentum=0.9, weight_decay=0.0)
    loader = BatchLoader(train_x, train_y, 64, seed=seed, mean=mean, prefetch=False)
    history = []
    for epoch in range(epochs):
        for xb, yb in loader:
            loss, dlogits = softmax_cross_entropy(model.forward(xb, train=True), yb)
            model.backward(dlogits)
            opt.step(model.grads)
        history.append((error(model, train_x, train_y), error(model, test_x, test_y)))
    return np.array(history)


histories = {}
for p in (0.0, 0.5):
    t0 = time.perf_counter()
    histories[p] = run(p, EPOCHS)
    tr, te = histories[p][-1]
    print(f"dropout {p}: {EPOCHS} epochs in {time.perf_counter() - t0:.0f} s; final training "
          f"error {100 * tr:.1f}%, test error {100 * te:.1f}%, gap {100 * (te - tr):.1f} points")

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8))
epochs = np.arange(1, EPOCHS + 1)
for p, color in [(0.0, "C3"), (0.5, "C0")]:
    h = histories[p]
    ax.plot(epochs, 100 * h[:, 0], "--", color=color, label=f"dropout {p}: training images")
    ax.plot(epochs, 100 * h[:, 1], "-", color=color, label=f"dropout {p}: test images")
ax.set_xlabel("epoch"), ax.set_ylabel("top-1 error (%)")
ax.set_title(f"tiny AlexNet, {N_TRAIN} training images, no augmentation")
ax.legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Without dropout the network memorizes its 1,000 training images: its training error
# falls to nearly zero while its test error stalls, and the gap between the two grows
# to well over 10 points. With dropout the gap is smaller: dropout does reduce
# overfitting here. Its test error is another matter:

# %%
(tr0, te0), (tr5, te5) = histories[0.0][-1], histories[0.5][-1]
print(f"after {EPOCHS} epochs: gap {100 * (te0 - tr0):.1f} points without dropout, "
      f"{100 * (te5 - tr5):.1f} with; test error {100 * te0:.1f}% without, {100 * te5:.1f}% with: "
      f"dropout {'lowered' if te5 < te0 else 'did not lower'} the test error in this run")

# %% [markdown]
# In this run the network with dropout ends with the **higher** test error (the
# line above). That is the price the paper warns of, "dropout roughly doubles the
# number of iterations required to converge", paid in a run too short to collect the
# reward. Does the reward come at a larger scale? The claims' runs of notebook 10
# trained with and without dropout for 8 to 20 epochs, three seeds each, on three
# scales, with augmentation (crops and reflections) on. Read from
# `experiments/results/SCALE/dropout.json`:

# %%
import json

recorded = {}
for scale in ("small", "medium", "medium-mini"):
    with open(os.path.join(ROOT, "experiments", "results", scale, "dropout.json")) as f:
        recorded[scale] = claim = json.load(f)
    print(f"{scale} ({claim['scale_desc']}): verdict {claim['verdict']!r}")
    for variant, st in claim["stats"].items():
        err, gap = st["test_top1_error"], st["train_test_gap"]
        print(f"    {variant:<12} test error {100 * err['mean']:5.2f} +- {100 * err['std']:.2f}%, "
              f"test - train gap {100 * gap['mean']:+5.2f} +- {100 * gap['std']:.2f} points")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
scales = list(recorded)
for k, (variant, color) in enumerate([("no dropout", "C3"), ("dropout 0.5", "C0")]):
    for ax, key in zip(axes, ("test_top1_error", "train_test_gap")):
        st = [recorded[sc]["stats"][variant][key] for sc in scales]
        ax.bar(np.arange(len(scales)) + 0.4 * k - 0.2, [100 * v["mean"] for v in st], 0.4,
               yerr=[100 * v["std"] for v in st], color=color, label=variant, capsize=3)
for ax, label in zip(axes, ("test top-1 error (%)", "test - train gap (points)")):
    ax.set_xticks(range(len(scales)), scales)
    ax.set_xlabel("scale (notebook 10)"), ax.set_ylabel(label)
    ax.axhline(0, color="0.5", lw=0.8)
axes[0].set_title("test error, mean and std of 3 seeds"), axes[1].set_title("overfitting gap")
axes[0].legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# At none of the three recorded scales does dropout lower the test error beyond the
# spread of the seeds: with the `tiny` network it is worse at both sizes of the data,
# and with the `mini` network on 12,000 images the two are level. The overfitting it
# fights is small there to begin with: with crops and reflections on, the test error
# is within a few points of the training error, and sometimes below it (a negative
# gap: the training batches, augmented and with dropout on, are harder than the test
# images). With the `mini` network the gap is smaller with dropout, but that gap
# takes the training error as measured during training, with dropout on, which
# flatters dropout; the clean measure is the one of the run above, in test mode on the
# training images.
#
# So the effect the paper names, less overfitting, appears where a network can
# memorize its data (the run above: 1,000 images, no augmentation); the gain in test
# error the paper reports needs a network that is large for its data and trained long
# enough, which is AlexNet's case (60 million parameters, 90% of them in fc6 and
# fc7, 90 epochs) and none of the scales a CPU affords here.
#
# ## What to remember
#
# - Training: zero each unit with probability $p$. Test: keep all units, and make the
#   output match the training-time expectation (the paper scales at test time, inverted
#   dropout at training time; the two differ only by a factor the next layer absorbs).
# - The backward multiplies by the same mask; fix the mask (a seed) to check it.
# - Dropout narrows the gap between training and test error, at the price of slower
#   training; on the small networks and short runs of this project it did not lower
#   the test error (the recorded runs above).
