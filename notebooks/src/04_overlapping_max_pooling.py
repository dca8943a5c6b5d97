# %% [markdown]
# # 4. Overlapping max-pooling
#
# A pooling layer summarizes each neighbourhood of a feature map by its maximum.
# Traditional CNNs used non-overlapping windows (window $z$ = stride $s$). AlexNet uses
# $z = 3$, $s = 2$, so neighbouring windows **overlap** by one row or column
# (Section 3.4). Against $z = s = 2$, which gives maps of the same size, this cut
# top-1/top-5 error by 0.4%/0.3%, and the paper found overlapping pooling slightly
# harder to overfit.
#
# The overlap changes the backward pass: one input pixel can be the maximum of several
# windows and then collects all their gradients. This notebook draws where each
# input's gradient comes from, looks at ties, and checks the backward. The code is
# `layers/pool.py`. You write the forward and, the point of it, the backward where
# windows overlap, into the stubs of the cells tagged `exercise`; the cell under each
# checks yours and prints `PASS`, `FAIL` (with where) or `not written yet`. Reference
# solutions: `notebooks/solutions/04_overlapping_max_pooling.py`.

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

from engine.gradcheck import check_op, format_table, numerical_gradient
from engine.im2col import col2im, im2col
from layers.pool import (maxpool2d_backward, maxpool2d_backward_naive, maxpool2d_forward,
                         maxpool2d_forward_naive)

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## The formula and the sizes
#
# $$\text{out}[n, c, i, j] = \max_{0 \le p, q < z} x[n, c,\; i s + p,\; j s + q],
#   \qquad O = \left\lfloor \frac{H - z}{s} \right\rfloor + 1 .$$
#
# On AlexNet's maps, both choices give the same sizes (so the comparison in the paper
# changes nothing else in the network):

# %%
for H in (55, 27, 13):
    print(f"{H:2d}x{H:<2d} -> 3x3 stride 2: {(H - 3) // 2 + 1:2d}   2x2 stride 2: {(H - 2) // 2 + 1:2d}")

x = rng.standard_normal((2, 3, 13, 13))
for z, s in [(3, 2), (2, 2)]:
    out, cache = maxpool2d_forward(x, size=z, stride=s)
    dout = rng.standard_normal(out.shape)
    same_fwd = np.array_equal(out, maxpool2d_forward_naive(x, z, s))
    same_bwd = np.allclose(maxpool2d_backward(dout, cache), maxpool2d_backward_naive(dout, x, z, s))
    print(f"{z}x{z} stride {s}: output {out.shape}; equals the loop version: forward {same_fwd}, "
          f"backward {same_bwd}")

# %% [markdown]
# ### Exercise 1: the forward
#
# Loop over the output positions $(i, j)$ and take the maximum of each window
# `x[:, :, i*s : i*s + z, j*s : j*s + z]` over its two last axes (all images and
# channels at once).

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py).
import numpy as np
from notebooks.exercises import check_maxpool_backward, check_maxpool_forward

# %% tags=["exercise"]
def my_maxpool_forward(x, size, stride):
    """Max-pooling, no padding. x: (N, C, H, W) -> (N, C, OH, OW), OH = (H - size) // stride + 1."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_maxpool_forward(my_maxpool_forward)

# %% [markdown]
# ## Where each input's gradient comes from
#
# The backward sends each output's gradient to the input that was the maximum of its
# window, and nowhere else:
#
# $$\frac{\partial L}{\partial x[n,c,y,x]} = \sum_{(i,j):\ (y,x) = \arg\max \text{ of window } (i,j)}
#   \frac{\partial L}{\partial\, \text{out}[n,c,i,j]} .$$
#
# First, how many windows **cover** each pixel. A pooling window has the same geometry
# as a convolution window, so `col2im` of a matrix of ones (see notebook 1) counts
# them. With 2x2 stride 2 every pixel is in exactly one window; with 3x3 stride 2 the
# pixels on even rows and columns, away from the borders, are shared by 2 windows, or
# by 4 where such a row and column cross; the first row and column are in one only.

# %%
def coverage(H, z, s):
    shape = (1, 1, H, H)
    return col2im(np.ones(im2col(np.zeros(shape), z, z, stride=s).shape), shape, z, z,
                  stride=s)[0, 0]


fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
for ax, (z, s) in zip(axes, [(2, 2), (3, 2)]):
    c = coverage(9, z, s)
    ax.imshow(c, cmap="Blues", vmin=0, vmax=4.5)
    for (r, q), v in np.ndenumerate(c):
        ax.text(q, r, f"{v:.0f}", ha="center", va="center", fontsize=9)
    ax.set_title(f"{z}x{z} stride {s}: windows covering each pixel", fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlabel("input column"), ax.set_ylabel("input row")
plt.tight_layout()
plt.show()

# %% [markdown]
# Covering a pixel is not the same as receiving its gradient: only the window's maximum
# does. Send a gradient of 1 from every output of a real feature map and count what
# each input pixel collects. Here the "feature map" is a Fashion-MNIST image. Its
# black background is flat (every pixel 0), and many garment pixels share a grey
# level, so many windows hold their maximum more than once: which pixel "wins" such
# a window says nothing about the image, only about the tie rule (below). So only the
# windows whose maximum is unique send their gradient here; the tied ones are counted
# and left out.

# %%
from data.datasets import load_dataset

ds = load_dataset("fashion-mnist-subset")
img = ds.train_x[ds.train_y == 7][:1].astype(np.float64) / 255    # a sneaker


def times_the_max_occurs(x, out, z, s):
    """For every window, how many of its entries equal its maximum."""
    Ho, Wo = out.shape[2:]
    return sum((x[:, :, p:p + s * (Ho - 1) + 1:s, q:q + s * (Wo - 1) + 1:s] == out).astype(int)
               for p in range(z) for q in range(z))


fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
axes[0].imshow(img[0, 0], cmap="gray"), axes[0].set_title("input 28x28")
for ax, (z, s) in zip(axes[1:], [(2, 2), (3, 2)]):
    out, cache = maxpool2d_forward(img, size=z, stride=s)
    unique = times_the_max_occurs(img, out, z, s) == 1
    received = maxpool2d_backward(unique.astype(np.float64), cache)[0, 0]
    im = ax.imshow(received, cmap="magma", vmin=0, vmax=4)
    ax.set_title(f"{z}x{z} stride {s}: how many windows\nhave each pixel as their max", fontsize=10)
    counts = ", ".join(f"{int((received == v).sum())} pixels from {int(v)}"
                       for v in np.unique(received))
    print(f"{z}x{z} stride {s}: {unique.sum()} of {unique.size} windows have a unique maximum "
          f"({unique.size - unique.sum()} tied, left out); {counts}")
plt.colorbar(im, ax=axes[1:].tolist(), fraction=0.03, label="windows won (gradient received)")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# With 2x2 windows each output picks one of its own 4 pixels: every pixel gets the
# gradient of at most one window. With overlapping 3x3 windows, a bright pixel on a
# shared row or column can win 2, 3 or 4 windows and collects the sum of their
# gradients (the printout counts them). The backward must add these contributions,
# not overwrite them: on NumPy it does so in one `np.add.at` (a scatter-add that sums
# repeated indices) at each window's maximum; its "masks" method, CuPy's default, adds
# them one window offset at a time instead (within one offset, no two windows reach
# the same pixel, so a plain `+=` is safe).
#
# A tiny example makes the sum visible: one peak in the middle of a 5x5 map is in all
# four 3x3 windows and wins each of them.

# %%
x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5) / 100
x[0, 0, 2, 2] = 1.0                                    # the peak, shared by all 4 windows
out, cache = maxpool2d_forward(x, size=3, stride=2)
dout = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
print("out =\n", out[0, 0])
print("dx =\n", maxpool2d_backward(dout, cache)[0, 0])

# %% [markdown]
# ## Ties
#
# When a window holds its maximum twice, the true function $\max$ has no derivative
# there: nudging either entry up raises the max, nudging it down does not. The project
# sends the whole gradient to the **first** maximum in row-major order (the rule of
# `np.argmax`), as the loop version does. A constant input shows the rule:

# %%
x = np.ones((1, 1, 5, 5))
fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, (z, s) in zip(axes, [(2, 2), (3, 2)]):
    xi = x[:, :, :4, :4] if z == 2 else x
    out, cache = maxpool2d_forward(xi, size=z, stride=s)
    dx = maxpool2d_backward(np.ones_like(out), cache)[0, 0]
    ax.imshow(dx, cmap="Blues", vmin=0, vmax=2)
    for (r, q), v in np.ndenumerate(dx):
        ax.text(q, r, f"{v:.0f}", ha="center", va="center")
    ax.set_title(f"constant input, {z}x{z} stride {s}:\ngradient goes to the first max", fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# This is also why the gradient check must avoid ties. At a tie the centered difference
# sees half a slope: moving a tied entry up by $h$ raises the max by $h$, moving it
# down by $h$ leaves the max unchanged (the other entry still holds it), so the
# estimate is $h / 2h = 0.5$ for **each** tied entry, while the backward says 1 and 0.

# %%
x = np.array([[[[0.7, 0.7], [0.1, 0.2]]]])              # one 2x2 window, a tie at the top
out, cache = maxpool2d_forward(x, size=2, stride=2)
analytic = maxpool2d_backward(np.ones_like(out), cache)
numeric = numerical_gradient(lambda: float(maxpool2d_forward(x, 2, 2)[0].sum()), x)
print("backward:            ", analytic.ravel())
print("centered differences:", numeric.ravel())

# %% [markdown]
# ## Gradient check
#
# So the check draws inputs with no ties: a shuffled ramp, every value at least $10^{-3}$
# from every other, far more than the step $h = 10^{-5}$, so a nudge never changes
# which entry is a window's maximum.

# %%
def tie_free(shape):
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 1e-3 + rng.standard_normal()


results = []
for z, s, shape in [(3, 2, (2, 3, 9, 9)), (3, 2, (2, 2, 8, 7)), (2, 2, (2, 3, 8, 6)),
                    (3, 3, (1, 2, 9, 9))]:
    results += check_op(f"maxpool2d {z}x{z} stride {s}, x {shape}", maxpool2d_forward,
                        maxpool2d_backward, {"x": tie_free(shape)}, ["x"],
                        {"size": z, "stride": s})
print(format_table(results))
assert all(r.passed for r in results)

# %% [markdown]
# ### Exercise 2: the backward where windows overlap
#
# For each output position, find the **first** maximum of its window (row-major:
# `window.reshape(N, C, -1).argmax(axis=2)`, then `np.divmod` by the window's width
# gives its row and column) and send that output's gradient there. Where windows
# overlap, one pixel can win several of them: its gradient is the sum. The check uses
# overlapping 3x3 stride 2 windows and the peak example above, so an `=` where a `+=`
# belongs fails it.

# %% tags=["exercise"]
def my_maxpool_backward(dout, x, size, stride):
    """dL/dx of max-pooling. dout: (N, C, OH, OW); x: the forward's input (N, C, H, W)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_maxpool_backward(my_maxpool_backward)

# %% [markdown]
# **Question.** With fancy indexing, `dx[n, c, rows, cols] += g` silently adds **once**
# per repeated index. Why is that a bug here, and why is it not one inside a loop
# over the output positions?
#
# <details><summary>Answer</summary>
#
# NumPy's `a[idx] += g` reads `a[idx]`, adds, and writes back; when `idx` repeats a
# position, the writes overwrite each other and only one addition survives. If one
# call covers all the windows at once, a pixel that wins two windows gets one
# gradient instead of their sum. `np.add.at(a, idx, g)` adds every repeat. Inside a
# loop over the output positions, each call handles one window per image and
# channel, so no index repeats within a call, and the sum builds up across the calls.
#
# </details>

# %% [markdown]
# ## The time of each way
#
# `maxpool2d_forward_naive` loops over every window in Python; `maxpool2d_forward`
# loops only over the 9 offsets of the window, each step comparing a whole strided
# slice of the batch. On a batch shaped like AlexNet's pool1 input:

# %%
shape = (2, 16, 55, 55) if SMALL else (8, 96, 55, 55)
x = rng.standard_normal(shape).astype(np.float32)
t0 = time.perf_counter()
maxpool2d_forward_naive(x, 3, 2)
t_naive = time.perf_counter() - t0
t0 = time.perf_counter()
out, cache = maxpool2d_forward(x, 3, 2)
t_fast = time.perf_counter() - t0
t0 = time.perf_counter()
maxpool2d_backward(np.ones_like(out), cache)
t_back = time.perf_counter() - t0
print(f"x {shape}: loops {1e3 * t_naive:.0f} ms, vectorized forward {1e3 * t_fast:.1f} ms "
      f"({t_naive / t_fast:.0f}x faster), backward {1e3 * t_back:.1f} ms")

# %% [markdown]
# ## What to remember
#
# - 3x3 stride 2 and 2x2 stride 2 give the same map sizes in AlexNet; the difference is
#   that 3x3 windows overlap.
# - With overlap, one input can be the maximum of up to 4 windows and its gradient is
#   the **sum** of theirs; most inputs get none.
# - Ties have no true derivative: the project's rule is "first maximum gets it all",
#   and gradient checks must use tie-free inputs.
