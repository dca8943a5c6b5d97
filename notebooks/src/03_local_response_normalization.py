# %% [markdown]
# # 3. Local response normalization
#
# After the ReLUs of conv1 and conv2, AlexNet divides each activation by a measure of
# the activity of its **neighbouring channels** at the same pixel (Section 3.3). The
# paper calls it brightness normalization, inspired by lateral inhibition in real
# neurons: a strongly active kernel map damps its neighbours. It cut top-1/top-5
# error by 1.4%/1.2%.
#
# This notebook shows the formula, what it does to a feature map, the four different
# ways libraries write its constants (a classic source of silent bugs), and the
# gradient check of its backward. The code is `layers/lrn.py`.
#
# You write the forward and the backward yourself, into the stubs of the cells tagged
# `exercise`; the cell under each checks yours against `lrn_forward` / `lrn_backward`
# and prints `PASS`, `FAIL` (with where) or `not written yet`. Reference solutions:
# `notebooks/solutions/03_local_response_normalization.py`.

# %%
import os
import sys

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
np.set_printoptions(precision=5, suppress=True, linewidth=110)

from engine.gradcheck import check_op, format_table
from layers.conv import conv2d_forward
from layers.activations import relu_forward
from layers.lrn import lrn_backward, lrn_forward, lrn_forward_naive

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## The formula
#
# For the activation $a^i_{x,y}$ of channel $i$ (of $N$) at pixel $(x, y)$:
#
# $$b^i_{x,y} = a^i_{x,y} \Big/ \Big(k + \alpha \sum_{j=\max(0,\, i-n/2)}^{\min(N-1,\, i+n/2)}
#   \big(a^j_{x,y}\big)^2\Big)^{\beta}$$
#
# with the paper's constants $n = 5$, $\alpha = 10^{-4}$, $\beta = 0.75$, $k = 2$. The
# sum runs over the $n$ channels centred on $i$ (fewer at the first and last channels;
# $n/2$ is rounded down). The channel order is arbitrary, fixed before training.
#
# `lrn_forward` computes the window sum with $n - 1$ shifted additions of whole arrays;
# `lrn_forward_naive` loops over channels, as the formula reads. They agree:

# %%
x = np.maximum(0, 40 * rng.standard_normal((2, 7, 4, 4)))     # ReLU outputs of a size like the paper's
fast, cache = lrn_forward(x)
slow = lrn_forward_naive(x)
print("largest relative difference, fast vs loop:", np.max(np.abs(fast - slow) / (np.abs(slow) + 1e-12)))

# %% [markdown]
# ### Exercise 1: the forward
#
# Write the formula: for every channel $c$, the sum of the squares of the channels
# $\max(0, c - n/2) \ldots \min(N - 1, c + n/2)$ (clipped at the borders, $n/2$ rounded
# down), then $b = a / (k + \alpha \cdot \text{sum})^\beta$. A loop over the channels is
# fine; the check tries the paper's constants on activations of the paper's size, and
# two other sets.

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py).
import numpy as np
from notebooks.exercises import check_lrn_backward, check_lrn_forward

# %% tags=["exercise"]
def my_lrn_forward(x, size, alpha, beta, k):
    """Local response normalization across channels, alpha as the paper writes it.

    x: (N, C, H, W); size: n, odd; alpha, beta, k: numbers. Returns b, shaped as x.
    """
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_lrn_forward(my_lrn_forward)

# %% [markdown]
# ## The response curve
#
# Say all $n$ channels of a window carry the same value $a$. Then
#
# $$b = \frac{a}{(k + n\alpha a^2)^\beta} \approx
#   \begin{cases} a / k^\beta & a \ll \sqrt{k / (n\alpha)} \approx 63 \\
#                 (n\alpha)^{-\beta}\, a^{1 - 2\beta} = (n\alpha)^{-0.75}\, a^{-0.5} & a \gg 63\end{cases}$$
#
# For small activations LRN only divides by the constant $k^\beta = 2^{0.75} = 1.68$.
# For large ones it does more than saturate: with $\beta = 0.75 > 0.5$ the output
# **falls** as the input grows. If a channel is active alone, its own square is the
# only term and the bend comes later, at $\sqrt{k/\alpha} \approx 141$.

# %%
a = np.logspace(-1, 4, 300)
together = np.repeat(a[None, None, :], 5, axis=1)[..., None]           # (1, 5, 300, 1)
alone = np.zeros_like(together)
alone[:, 2] = a[None, :, None]                                         # only channel 2 active
b_together = lrn_forward(together)[0][0, 2, :, 0]
b_alone = lrn_forward(alone)[0][0, 2, :, 0]

fig, ax = plt.subplots(figsize=(7, 3.6))
ax.loglog(a, a / 2 ** 0.75, ":", color="gray", label="a / k^beta (no neighbours' effect)")
ax.loglog(a, b_alone, label="channel active alone")
ax.loglog(a, b_together, label="all 5 channels equal to a")
ax.set_xlabel("activation a"), ax.set_ylabel("LRN output b")
ax.legend(fontsize=9)
plt.tight_layout()
plt.show()
print(f"largest output when all 5 are equal: b = {b_together.max():.2f} at a = {a[b_together.argmax()]:.0f}")

# %% [markdown]
# So LRN matters only when activations are in the tens or hundreds. The paper presumably
# fed its network raw pixel values (0 to 255, minus the mean: it states only the mean
# subtraction), and with weights $\mathcal{N}(0,
# 0.01^2)$ conv1's ReLUs reach that range. Our training pipeline scales pixels to
# $[0, 1]$ (see `data/augment.py`), which makes conv1's activations about 255 times
# smaller, so with the paper's constants LRN there is nearly the constant division by
# $2^{0.75}$. Keep that in mind when you compare runs with and without it.
#
# ## What it does to a feature map
#
# A small bank of oriented edge filters (we make them here: 8 orientations, two
# phases), run by the project's `conv2d_forward` and `relu_forward` over a Fashion-MNIST
# image in the paper's units (pixel values 0-255 minus the mean), gives feature maps of
# the size LRN was tuned for. Then `lrn_forward` normalizes them.

# %%
from data.datasets import load_dataset

ds = load_dataset("fashion-mnist-subset")
mean_pixel = ds.train_x.mean()
img = ds.train_x[ds.train_y == 0][:1].astype(np.float64) - mean_pixel    # a T-shirt, paper units

yy, xx = np.mgrid[-3:4, -3:4].astype(np.float64)
filters = []
for phase in (0.0, np.pi / 2):
    for theta in np.arange(8) * np.pi / 8:
        u = xx * np.cos(theta) + yy * np.sin(theta)
        g = np.exp(-(xx ** 2 + yy ** 2) / 8) * np.cos(2 * np.pi * u / 6 + phase)
        filters.append(g - g.mean())
w = np.stack(filters)[:, None] / 4                              # (16, 1, 7, 7)
act, _ = relu_forward(conv2d_forward(img, w, None, pad=3)[0])   # (1, 16, 28, 28)
normed, (_, scale, denom, *_) = lrn_forward(act)

print(f"activations: max {act.max():.0f}, mean of the nonzero ones {act[act > 0].mean():.0f}")
show = [1, 4, 9, 13]
fig, axes = plt.subplots(3, len(show) + 1, figsize=(10, 6.2))
axes[0, 0].imshow(img[0, 0], cmap="gray"), axes[0, 0].set_title("input")
axes[1, 0].imshow(w[show[0], 0], cmap="RdBu"), axes[1, 0].set_title(f"filter {show[0]}")
axes[2, 0].imshow(denom[0].max(axis=0), cmap="magma")
axes[2, 0].set_title("largest divisor\n(k + alpha sum)^beta", fontsize=9)
for col, ch in enumerate(show, start=1):
    vmax = act[0, ch].max()
    axes[0, col].imshow(act[0, ch], cmap="viridis", vmin=0, vmax=vmax)
    axes[0, col].set_title(f"channel {ch}: before\nmax {vmax:.0f}", fontsize=9)
    axes[1, col].imshow(normed[0, ch], cmap="viridis", vmin=0)
    axes[1, col].set_title(f"after LRN\nmax {normed[0, ch].max():.1f}", fontsize=9)
    ratio = np.where(act[0, ch] > 0, normed[0, ch] / np.maximum(act[0, ch], 1e-12), np.nan)
    axes[2, col].imshow(ratio, cmap="cividis")
    axes[2, col].set_title(f"after / before\n{np.nanmin(ratio):.3f} to {np.nanmax(ratio):.3f}", fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The weak responses are divided by about $2^{0.75} = 1.68$ everywhere; the strong ones,
# on the edges where several neighbouring orientations fire together, are divided by
# much more. LRN compresses the range of the responses and favours a channel that
# stands out from its neighbours over one that fires together with them.
#
# Scaled to $[0, 1]$ pixels (our training pipeline), the same image and filters give
# activations 255 times smaller, and LRN is then almost exactly the constant division:

# %%
small_act = act / 255
small_out, _ = lrn_forward(small_act)
nz = small_act > 0
dev = np.abs(small_out[nz] * 2 ** 0.75 / small_act[nz] - 1).max()
print(f"pixels in [0, 1]: activations up to {small_act.max():.2f}; b * 2^0.75 / a differs "
      f"from 1 by at most {dev:.1e}")

# %% [markdown]
# ## Four conventions for the same layer
#
# Libraries write the constants differently, and mixing them up gives a network that
# runs, trains, and is silently not the paper's:
#
# | library | how the sum is weighted | window | defaults |
# |---|---|---|---|
# | paper (and Chainer, and `lrn_forward`) | $k + \alpha \sum$ | `size` $n$ | $n=5$, $\alpha=10^{-4}$, $\beta=0.75$, $k=2$ |
# | Caffe `LRN` (cuda-convnet divides the same way) | $k + \frac{\alpha}{n} \sum$ | `local_size` $n$ | $n=5$, $\alpha=1$, $\beta=0.75$, $k=1$ |
# | PyTorch `nn.LocalResponseNorm` | $k + \frac{\alpha}{n} \sum$ (zero-padded average) | `size` $n$ | $\alpha=10^{-4}$, $\beta=0.75$, $k=1$ |
# | TensorFlow `local_response_normalization` | `bias` $+ \alpha \sum$ | `depth_radius` $r$, $n = 2r+1$ | $r=5$, $\alpha=1$, $\beta=0.5$, bias $=1$ |
#
# So the paper's layer is Caffe/PyTorch with $\alpha = 5 \times 10^{-4}$ and $k = 2$,
# and TensorFlow with `depth_radius=2`, `bias=2`, `alpha=1e-4`, `beta=0.75` (TensorFlow's
# own defaults are alpha 1 and beta 0.5). Below each library's formula is
# written out in NumPy (no torch or TensorFlow needed), each with a loop over the
# channel window so it reads like its documentation, and compared with the project's
# `lrn_forward`.

# %%
def window_sum_of_squares(x, radius):
    """sum_{j = max(0, i - r)}^{min(N - 1, i + r)} x[:, j]^2 for every channel i."""
    N = x.shape[1]
    return np.stack([(x[:, max(0, i - radius):min(N - 1, i + radius) + 1] ** 2).sum(axis=1)
                     for i in range(N)], axis=1)


def caffe_lrn(x, local_size=5, alpha=1.0, beta=0.75, k=1.0):
    """Caffe ACROSS_CHANNELS: scale = k + alpha / local_size * sum (zero padding)."""
    return x / (k + alpha / local_size * window_sum_of_squares(x, local_size // 2)) ** beta


def torch_lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """torch.nn.LocalResponseNorm: an average of squares over `size` channels, the
    missing channels at the borders counted as zeros: k + alpha * avg."""
    sq = np.pad(x ** 2, [(0, 0), (size // 2, (size - 1) // 2), (0, 0), (0, 0)])
    avg = np.stack([sq[:, i:i + size].sum(axis=1) / size for i in range(x.shape[1])], axis=1)
    return x / (k + alpha * avg) ** beta


def tf_lrn(x, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5):
    """tf.nn.local_response_normalization on channels-last input:
    sqr_sum = sum(input[..., d - r: d + r + 1] ** 2); output = input / (bias + alpha * sqr_sum) ** beta."""
    x_nhwc = x.transpose(0, 2, 3, 1)
    C = x_nhwc.shape[-1]
    sqr_sum = np.stack([(x_nhwc[..., max(0, d - depth_radius):d + depth_radius + 1] ** 2).sum(-1)
                        for d in range(C)], axis=-1)
    return (x_nhwc / (bias + alpha * sqr_sum) ** beta).transpose(0, 3, 1, 2)


x = np.maximum(0, 60 * rng.standard_normal((2, 16, 5, 5)))     # activations of the paper's size
paper, _ = lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0)


def rel(y):
    return np.max(np.abs(y - paper) / np.maximum(np.abs(paper), 1e-12))


rows = [
    ("Caffe, the paper's numbers typed in (alpha=1e-4, k=2)", caffe_lrn(x, 5, 1e-4, 0.75, 2.0)),
    ("Caffe, bvlc_alexnet prototxt (alpha=1e-4, k left at 1)", caffe_lrn(x, 5, 1e-4, 0.75)),
    ("Caffe, translated (alpha=5e-4, k=2)", caffe_lrn(x, 5, 5e-4, 0.75, 2.0)),
    ("PyTorch, the paper's numbers typed in", torch_lrn(x, 5, 1e-4, 0.75, 2.0)),
    ("PyTorch, translated: LocalResponseNorm(5, 5e-4, 0.75, 2)", torch_lrn(x, 5, 5e-4, 0.75, 2.0)),
    ("TensorFlow, depth_radius=5 (read as 'n = 5')", tf_lrn(x, 5, 2.0, 1e-4, 0.75)),
    ("TensorFlow, translated: depth_radius=2, bias=2", tf_lrn(x, 2, 2.0, 1e-4, 0.75)),
    ("TensorFlow, its defaults", tf_lrn(x)),
]
print(f"{'convention':<60} largest relative difference from the paper")
for name, y in rows:
    print(f"{name:<60} {rel(y):.1e}")

# %% [markdown]
# The translated forms agree with the paper to rounding error; everything else is a
# different layer. Two details worth seeing:
#
# - Caffe's reference AlexNet model (`bvlc_alexnet`) writes `alpha: 0.0001` as the
#   paper does, but Caffe divides it by $n = 5$, and its `k` is left at the default 1.
#   Its LRN is not the paper's.
# - PyTorch averages over a zero-padded window, dividing by $n$ even at the border
#   channels where fewer than $n$ are real. Since the padding adds zeros, that is still
#   $\alpha/n$ times the clipped sum, so the translation holds on every channel:

# %%
y = torch_lrn(x, 5, 5e-4, 0.75, 2.0)
for ch in (0, 1, 8, 15):
    print(f"channel {ch:2d}: largest difference from the paper {np.abs(y[:, ch] - paper[:, ch]).max():.1e}")

# %% [markdown]
# ## The backward pass
#
# $b_i$ depends on $a_m$ directly (when $m = i$) and through the sum (when $m$ is in
# $i$'s window). Writing $s_i = k + \alpha \sum_{j \in W(i)} a_j^2$ and $g = \partial L /
# \partial b$:
#
# $$\frac{\partial L}{\partial a_m} = g_m\, s_m^{-\beta}
#   \;-\; 2\alpha\beta\, a_m \sum_{i:\, m \in W(i)} \frac{g_i\, b_i}{s_i}.$$
#
# The window is symmetric, so "every $i$ whose window contains $m$" is $m$'s own
# window, and the second term is the same windowed sum as the forward pass, applied to
# $g\,b/s$. The check uses the paper's constants, then $\alpha = 1$, which makes the
# cross-channel term large, so that a mistake in the window would show.

# %%
results = check_op("lrn (paper: n=5, alpha=1e-4, beta=0.75, k=2)", lrn_forward, lrn_backward,
                   {"x": 30 * rng.standard_normal((2, 7, 3, 3))}, ["x"],
                   {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0})
results += check_op("lrn (alpha=1, cross-channel term large)", lrn_forward, lrn_backward,
                    {"x": rng.standard_normal((2, 7, 3, 3))}, ["x"],
                    {"size": 5, "alpha": 1.0, "beta": 0.75, "k": 2.0})
results += check_op("lrn (n=3, beta=0.5, k=1)", lrn_forward, lrn_backward,
                    {"x": rng.standard_normal((2, 6, 3, 3))}, ["x"],
                    {"size": 3, "alpha": 0.5, "beta": 0.5, "k": 1.0})
print(format_table(results))
assert all(r.passed for r in results)

# %% [markdown]
# ### Exercise 2: the backward
#
# Write the formula above. Recompute $s$ and $b$ from $x$ (the project caches them;
# here you get only $x$), then the two terms; the second is the same windowed sum as
# in the forward, applied to $g\,b/s$. The check compares with `lrn_backward` and runs
# a gradient check, also with $\alpha = 1$, where leaving out the cross-channel term
# shows at once.

# %% tags=["exercise"]
def my_lrn_backward(dout, x, size, alpha, beta, k):
    """dL/dx of LRN, given g = dL/db (dout) and the forward's input x and constants."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_lrn_backward(my_lrn_backward)

# %% [markdown]
# **Question.** Why does the paper's LRN need $k = 2$ (or any $k > 0$)? What would
# $k = 0$ do to a weak activation?
#
# <details><summary>Answer</summary>
#
# With $k = 0$ a channel alone in its window gives $b = a / (\alpha a^2)^\beta =
# \alpha^{-\beta} a^{1 - 2\beta}$: with $\beta = 0.75$ that is $a^{-0.5}$, which
# **grows without bound** as $a \to 0$ (and divides by zero at $a = 0$). Weak, noisy
# activations would become the largest outputs. $k$ puts a floor under the divisor:
# below about $\sqrt{k / (n\alpha)}$ the layer is the constant division by
# $k^\beta$, and only strong activations are damped. $k = 2$ sets where that bend is,
# for activations of the size the paper's network produced.
#
# </details>
#
# **Question.** You port AlexNet to PyTorch and type the paper's numbers into
# `nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)`. Does anything break?
#
# <details><summary>Answer</summary>
#
# Nothing breaks, and that is the trouble: PyTorch divides $\alpha$ by $n$, so the
# layer normalizes five times more weakly than the paper's. The network trains and is
# silently a different one (the table above: the "paper's numbers typed in" rows).
# The paper's layer is `LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)`.
#
# </details>
#
# ## What to remember
#
# - LRN divides each activation by $(k + \alpha \sum_\text{window} a^2)^\beta$ over $n$
#   neighbouring channels; with the paper's constants it acts only on activations in
#   the tens and above, and then strongly.
# - The paper's $\alpha$ is Caffe's and PyTorch's $\alpha / n$; TensorFlow counts the
#   window by its radius. Check $k$ too: Caffe and PyTorch default to 1, the paper uses 2.
# - Later networks dropped LRN (the VGG paper found it did not help, and batch
#   normalization took over the job of keeping activations in range), but reproducing
#   AlexNet means reproducing its constants exactly.
