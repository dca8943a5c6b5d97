# %% [markdown]
# # 1. Convolution as im2col
#
# Five of AlexNet's eight weight layers are convolutions, and they take about 90% of
# its arithmetic. This notebook takes the project's convolution apart:
#
# 1. the definition, computed with plain loops (`conv2d_forward_naive`);
# 2. **im2col**: copy every input window into a column, and the whole convolution
#    becomes **one matrix product** (`conv2d_forward`);
# 3. grouped convolution, the paper's two-GPU split;
# 4. the backward pass, and **col2im**, the adjoint of im2col;
# 5. a gradient check, and the time each way takes.
#
# All the code it runs lives in `layers/conv.py` and `engine/im2col.py`.
#
# **Your turn, twice.** You write the convolution's forward by loops, then its backward
# through im2col. Each blank is a function stub in a cell tagged `exercise`; the cell
# under it (tagged `check`) compares your function with the project's op on random
# inputs, runs a gradient check where there is a backward, and prints one line:
# `PASS` with the error, `FAIL` with the largest difference and where it is, or
# `not written yet`. The notebook runs top to bottom with the blanks left as they are.
# Stuck? The reference solutions are in `notebooks/solutions/01_convolution_im2col.py`.

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

plt.rcParams.update({"figure.dpi": 100, "figure.figsize": (9, 3.5), "image.cmap": "viridis"})
np.set_printoptions(precision=4, suppress=True, linewidth=110)

from engine.gradcheck import check_op, format_table
from engine.im2col import col2im, conv_output_size, im2col
from layers.conv import conv2d_backward, conv2d_forward, conv2d_forward_naive

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## The definition
#
# A convolution layer (deep-learning libraries compute a cross-correlation and call it
# convolution) slides each of its $F$ filters, of size $C \times K_H \times K_W$, over
# the zero-padded input and takes a dot product at every position:
#
# $$\text{out}[n, f, o_h, o_w] = b_f + \sum_{c=0}^{C-1}\sum_{i=0}^{K_H-1}\sum_{j=0}^{K_W-1}
#   w[f, c, i, j]\; x_\text{pad}[n, c,\; o_h s_h + i,\; o_w s_w + j]$$
#
# With stride $s$ and padding $p$ the output has, along each axis,
#
# $$O = \left\lfloor \frac{H + 2p - K}{s} \right\rfloor + 1 .$$
#
# `conv2d_forward_naive` computes exactly this with Python loops over the output
# positions. `conv2d_forward` computes it with im2col. They must agree:

# %%
x = rng.standard_normal((2, 3, 9, 9))
w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)

slow = conv2d_forward_naive(x, w, b, stride=2, pad=1)
fast, _ = conv2d_forward(x, w, b, stride=2, pad=1)
print("output shape:", fast.shape, " expected O =", conv_output_size(9, 3, stride=2, pad=1))
print("largest difference, loops vs im2col:", np.abs(slow - fast).max())

# %% [markdown]
# ### Exercise 1: the convolution by loops
#
# Write the formula above as loops over the output positions $(o_h, o_w)$, for one
# group. At each position, the window `xpad[:, :, oh*s : oh*s + KH, ow*s : ow*s + KW]`
# (all images, all channels) meets every filter: a sum over $c, i, j$
# (`np.tensordot`, or `np.einsum`, or one more loop over the filters). The check
# compares your output with `conv2d_forward` on three geometries, one of them conv1's
# 11x11 stride 4.

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py) and the project's im2col.
import numpy as np
from engine.im2col import col2im, im2col
from notebooks.exercises import check_conv_backward, check_conv_forward

# %% tags=["exercise"]
def my_conv_forward(x, w, b, stride, pad):
    """Convolution (groups = 1) by loops over the output positions.

    x: (N, C, H, W); w: (F, C, KH, KW); b: (F,); stride, pad: ints.
    Returns out: (N, F, OH, OW), OH = (H + 2 pad - KH) // stride + 1, same for OW.
    """
    # YOUR CODE HERE: pad x once (np.pad), then fill out one (oh, ow) at a time.
    raise NotImplementedError


# %% tags=["check"]
check_conv_forward(my_conv_forward)

# %% [markdown]
# ## What the im2col matrix looks like
#
# `im2col` copies the $C \times K_H \times K_W$ window under every output position
# into one **column**. Rows are ordered $(c, i, j)$, the same order as a flattened
# filter, and columns are ordered $(n, o_h, o_w)$:
#
# $$\text{cols}[(c,i,j),\,(n,o_h,o_w)] = x_\text{pad}[n, c, o_h s_h + i, o_w s_w + j]$$
#
# Take a 4x4 image holding the numbers 0 to 15 and a 3x3 kernel: there are 2x2 output
# positions, so `cols` has 4 columns of 9 entries.

# %%
img = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
cols = im2col(img, 3, 3, stride=1, pad=0)
print("cols shape:", cols.shape)
print(cols)

fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), gridspec_kw={"width_ratios": [1, 1.1]})
for ax, a, title in [(axes[0], img[0, 0], "input 4x4"),
                     (axes[1], cols, "im2col: one column per window")]:
    ax.imshow(a, cmap="Blues", vmin=-4, vmax=20)
    for (r, c), v in np.ndenumerate(a):
        ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=9)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
axes[1].set_xlabel("output position (o_h, o_w)")
axes[1].set_ylabel("kernel offset (i, j)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Each column is one window read row by row; neighbouring columns share entries
# (the window moved by one pixel), so im2col **repeats** every pixel up to
# $K_H K_W$ times. Read the other way, row $(c, i, j)$ of `cols` is the whole input
# shifted by $(i, j)$. On a real picture (a Fashion-MNIST image), with a 5x5 kernel,
# padding 2: each of the 25 rows, reshaped back to 28x28, is the image moved a little.

# %%
from data.datasets import load_dataset

ds = load_dataset("fashion-mnist-subset")
shoe = ds.train_x[ds.train_y == 9][0:1].astype(np.float64) / 255   # an ankle boot
cols = im2col(shoe, 5, 5, stride=1, pad=2)
print("cols shape:", cols.shape, "= (C*KH*KW, N*OH*OW) =", (1 * 5 * 5, 1 * 28 * 28))

fig, axes = plt.subplots(1, 6, figsize=(11, 2.3))
axes[0].imshow(cols, aspect="auto", cmap="gray")
axes[0].set_title("cols (25 x 784)")
axes[0].set_xlabel("output position"), axes[0].set_ylabel("(i, j)")
for ax, (i, j) in zip(axes[1:], [(0, 0), (0, 4), (2, 2), (4, 0), (4, 4)]):
    ax.imshow(cols[i * 5 + j].reshape(28, 28), cmap="gray")
    ax.set_title(f"row (i={i}, j={j})")
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The convolution is one matrix product
#
# Flatten the filters into the rows of a matrix $W \in \mathbb{R}^{F \times C K_H K_W}$
# (that is just `w.reshape(F, -1)`, no copy). Then
#
# $$\text{out} = W \cdot \text{cols} \quad (F \times N O_H O_W), $$
#
# plus the bias, reshaped to $(N, F, O_H, O_W)$. One large product is what BLAS
# (NumPy) and cuBLAS (CuPy) do fastest. We can redo by hand what `conv2d_forward`
# does:

# %%
x = rng.standard_normal((2, 3, 9, 9))
F = 4
cols = im2col(x, 3, 3, stride=2, pad=1)
out_mat = w.reshape(F, -1) @ cols + b[:, None]              # (F, N*OH*OW)
by_hand = out_mat.reshape(F, 2, 5, 5).transpose(1, 0, 2, 3)   # -> (N, F, OH, OW)
fast, _ = conv2d_forward(x, w, b, stride=2, pad=1)
print("W:", w.reshape(F, -1).shape, " cols:", cols.shape, " out:", by_hand.shape)
print("largest difference, by hand vs conv2d_forward:", np.abs(by_hand - fast).max())

# %% [markdown]
# The price is memory. For AlexNet's conv1 (96 filters of 3x11x11, stride 4, on a
# 3x227x227 image) each column has $3 \cdot 11 \cdot 11 = 363$ entries and there are
# $55 \cdot 55 = 3025$ columns per image:

# %%
K, P = 3 * 11 * 11, conv_output_size(227, 11, stride=4) ** 2
image_mb = 3 * 227 * 227 * 4 / 2**20
cols_mb = K * P * 4 / 2**20
print(f"one image: {image_mb:.2f} MiB of float32; its im2col matrix {K} x {P}: "
      f"{cols_mb:.2f} MiB ({cols_mb / image_mb:.1f}x)")
print(f"a batch of 128: {128 * cols_mb / 1024:.2f} GiB for conv1's im2col matrix")

# %% [markdown]
# ## Grouped convolution: the paper's two GPUs
#
# AlexNet was split over two GTX 580 GPUs with 3 GB each (Section 3.2). The kernels of
# conv2, conv4 and conv5 see only the feature maps on their own GPU. That is a
# **grouped** convolution with `groups=2`: the first $F/2$ filters read only the first
# $C/2$ channels, the last $F/2$ only the last $C/2$. Each filter has $C/2$ channels,
# so the layer has half the weights.
#
# It is the same as two independent convolutions on the two halves, concatenated:

# %%
x = rng.standard_normal((2, 4, 6, 6))
wg = rng.standard_normal((6, 2, 3, 3))       # 6 filters, each sees 4 / 2 = 2 channels
bg = rng.standard_normal(6)
grouped, _ = conv2d_forward(x, wg, bg, pad=1, groups=2)
top, _ = conv2d_forward(x[:, :2], wg[:3], bg[:3], pad=1)
bottom, _ = conv2d_forward(x[:, 2:], wg[3:], bg[3:], pad=1)
print("groups=2 equals two convolutions on the halves:",
      np.allclose(grouped, np.concatenate([top, bottom], axis=1)))

# %% [markdown]
# In the matrix picture, `groups=2` makes the filter-by-channel connectivity
# block-diagonal: each group is its own smaller matrix product (`conv2d_forward` runs
# one per group). Here is which input channel each filter of conv2 reads, for one
# GPU and for two:

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
for ax, groups in zip(axes, [1, 2]):
    conn = np.zeros((256, 96))
    for g in range(groups):
        conn[g * 256 // groups:(g + 1) * 256 // groups, g * 96 // groups:(g + 1) * 96 // groups] = 1
    ax.imshow(conn, aspect="auto", cmap="Greys", vmin=0, vmax=1.3)
    params = 256 * (96 // groups) * 5 * 5 + 256
    ax.set_title(f"conv2, groups={groups}: {params:,} parameters")
    ax.set_xlabel("input channel (96)"), ax.set_ylabel("filter (256)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The backward pass, and col2im
#
# Write the forward for one group as $\text{out} = W\,\text{cols} + b$. Given the
# upstream gradient $G = \partial L / \partial\, \text{out}$ (as an $F \times N O_H O_W$
# matrix), the gradients are those of a matrix product:
#
# $$\frac{\partial L}{\partial W} = G\,\text{cols}^\top, \qquad
#   \frac{\partial L}{\partial b} = \sum_{\text{columns}} G, \qquad
#   \frac{\partial L}{\partial\,\text{cols}} = W^\top G .$$
#
# The last one is a gradient for the **copies** that im2col made. A pixel copied into
# several columns receives the sum of their gradients: that is `col2im`, which adds
# every column entry back onto the pixel it came from. As a linear map, col2im is the
# transpose (the adjoint) of im2col, so for any $x$ and $y$
#
# $$\langle \text{im2col}(x),\, y\rangle = \langle x,\, \text{col2im}(y)\rangle .$$

# %%
x = rng.standard_normal((2, 3, 9, 9))
y = rng.standard_normal(im2col(x, 3, 3, stride=2, pad=1).shape)
lhs = np.sum(im2col(x, 3, 3, stride=2, pad=1) * y)
rhs = np.sum(x * col2im(y, x.shape, 3, 3, stride=2, pad=1))
print(f"<im2col(x), y> = {lhs:.10f}")
print(f"<x, col2im(y)> = {rhs:.10f}")

# %% [markdown]
# col2im of a matrix of ones counts how many windows cover each pixel: how many terms
# each input pixel's gradient gathers. With 3x3, stride 1, pad 1 the interior pixels
# are in 9 windows and the borders in fewer. AlexNet's conv1 (11x11, stride 4) covers
# the image **unevenly**: 11 is not a multiple of 4, so along each axis a pixel lies in
# 2 or 3 windows (fewer at the borders).

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
cases = [((1, 1, 12, 12), 3, 1, 1, "3x3, stride 1, pad 1 (12x12 input)"),
         ((1, 1, 35, 35), 11, 4, 0, "11x11, stride 4 (like conv1), 35x35 input")]
for ax, (shape, k, s, p, title) in zip(axes, cases):
    ones = np.ones(im2col(np.zeros(shape), k, k, stride=s, pad=p).shape)
    count = col2im(ones, shape, k, k, stride=s, pad=p)[0, 0]
    im = ax.imshow(count, cmap="magma")
    plt.colorbar(im, ax=ax, fraction=0.046, label="windows covering the pixel")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("input column"), ax.set_ylabel("input row")
plt.tight_layout()
plt.show()

for size in (227, 224):
    shape = (1, 1, size, size)
    count = col2im(np.ones(im2col(np.zeros(shape), 11, 11, stride=4).shape), shape, 11, 11,
                   stride=4)[0, 0]
    print(f"conv1 on {size}x{size}: {conv_output_size(size, 11, 4)}x{conv_output_size(size, 11, 4)} "
          f"outputs; windows per pixel: {np.unique(count).astype(int).tolist()}; "
          f"pixels in no window: {int((count == 0).sum())}")

# %% [markdown]
# With 227 every pixel is read: the 55th window ends exactly on the last pixel. With the
# 224 the paper states, conv1 gives 54x54 and never reads the last row and column
# (notebook 6 comes back to this).
#
# ## Gradient check
#
# The backward is only trusted after comparing it with **centered differences**. For a
# random upstream gradient $G$, take $L = \sum \text{out} \odot G$; then for every
# entry $\theta$ of $x$, $w$ and $b$
#
# $$\frac{\partial L}{\partial \theta} \approx \frac{L(\theta + h) - L(\theta - h)}{2h},
#   \qquad \text{rel} = \frac{|a - n|}{\max(10^{-8}, |a| + |n|)} .$$
#
# `engine.gradcheck.check_op` does this in float64 with $h = 10^{-5}$; a correct
# backward gives a relative error of a few times $10^{-6}$ at most, often far less (the
# check passes below $10^{-5}$), and a bug $10^{-3}$ or worse.

# %%
results = []
for kwargs, shapes in [
        (dict(stride=1, pad=1), ((2, 3, 7, 7), (4, 3, 3, 3))),
        (dict(stride=2, pad=2), ((2, 2, 9, 7), (3, 2, 5, 5))),
        (dict(stride=1, pad=1, groups=2), ((2, 4, 6, 6), (6, 2, 3, 3))),
        (dict(stride=4, pad=0), ((1, 3, 19, 19), (2, 3, 11, 11)))]:
    xs, ws = shapes
    inputs = {"x": rng.standard_normal(xs), "w": rng.standard_normal(ws),
              "b": rng.standard_normal(ws[0])}
    name = "conv2d " + ", ".join(f"{k}={v}" for k, v in kwargs.items())
    results += check_op(name, conv2d_forward, conv2d_backward, inputs, ["x", "w", "b"],
                        kwargs, max_checks=60 if SMALL else 200)
print(format_table(results))
assert all(r.passed for r in results)

# %% [markdown]
# ### Exercise 2: the backward through im2col
#
# Now the backward, for one group. Redo the forward's im2col (`im2col(x, KH, KW,
# (stride, stride), (pad, pad))`, a $(C K_H K_W) \times (N O_H O_W)$ matrix with columns
# ordered $(n, o_h, o_w)$), lay `dout` out as the $F \times N O_H O_W$ matrix $G$ in the
# same column order (a transpose and a reshape), and use the three formulas above:
# $dW = G\,\text{cols}^\top$, $db$ = the row sums of $G$, and $dx$ = `col2im` of
# $W^\top G$. The check compares your three gradients with `conv2d_backward` and runs
# a gradient check of each.

# %% tags=["exercise"]
def my_conv_backward(dout, x, w, stride, pad):
    """Gradients of the convolution (groups = 1), through im2col and col2im.

    dout: (N, F, OH, OW); x: (N, C, H, W); w: (F, C, KH, KW); stride, pad: ints.
    Returns (dx, dw, db) with the shapes of x, w and (F,).
    """
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_conv_backward(my_conv_backward)

# %% [markdown]
# **Question.** Why is col2im a *sum* onto each pixel and not a copy back, as the
# inverse of im2col's copy would be?
#
# <details><summary>Answer (open it after you have thought about it)</summary>
#
# im2col copies a pixel into every column whose window covers it, so the pixel
# influences the loss through each of those copies. By the chain rule its gradient is
# the sum of the gradients of all its copies. col2im is the transpose (adjoint) of
# im2col, not its inverse: the adjoint of "copy to several places" is "add up from
# those places". Copying back would keep only one copy's gradient (whichever was
# written last), and the gradient check above would fail wherever windows overlap.
#
# </details>
#
# ## The time of each way
#
# The loops run $F \cdot O_H \cdot O_W$ small NumPy operations; im2col runs $K_H K_W$
# copies and one matrix product per group. Timings on this machine (float32, best of
# a few runs; they vary from machine to machine, the ratio is the point):

# %%
def best_time(f, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


n = 2 if SMALL else 8
cases = [("conv1-like: 3x227x227 -> 96, 11x11 s4",
          (n, 3, 227 if not SMALL else 67, 227 if not SMALL else 67), (96, 3, 11, 11), 4, 0, 1),
         ("conv2-like: 96x27x27 -> 256, 5x5 g2",
          (n, 96, 27 if not SMALL else 9, 27 if not SMALL else 9), (256, 48, 5, 5), 1, 2, 2),
         ("conv3-like: 256x13x13 -> 384, 3x3",
          (n, 256, 13 if not SMALL else 5, 13 if not SMALL else 5), (384, 256, 3, 3), 1, 1, 1)]
rows = []
for name, xs, ws, s, p, g in cases:
    x = rng.standard_normal(xs).astype(np.float32)
    w = (0.01 * rng.standard_normal(ws)).astype(np.float32)
    b = np.zeros(ws[0], np.float32)
    t_naive = best_time(lambda: conv2d_forward_naive(x, w, b, stride=s, pad=p, groups=g), 1)
    t_fast = best_time(lambda: conv2d_forward(x, w, b, stride=s, pad=p, groups=g), 3)
    out, cache = conv2d_forward(x, w, b, stride=s, pad=p, groups=g)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    t_back = best_time(lambda: conv2d_backward(dout, cache), 3)
    rows.append((name, t_naive, t_fast, t_back))
    print(f"{name:<40} x {str(xs):<20} loops {1e3 * t_naive:8.1f} ms   im2col {1e3 * t_fast:7.1f} ms"
          f"   ({t_naive / t_fast:5.0f}x)   backward {1e3 * t_back:7.1f} ms")

fig, ax = plt.subplots(figsize=(9, 3))
ypos = np.arange(len(rows))
ax.barh(ypos - 0.25, [r[1] * 1e3 for r in rows], 0.25, label="loops (forward)")
ax.barh(ypos, [r[2] * 1e3 for r in rows], 0.25, label="im2col + GEMM (forward)")
ax.barh(ypos + 0.25, [r[3] * 1e3 for r in rows], 0.25, label="im2col backward (dx, dw, db)")
ax.set_yticks(ypos, [r[0] for r in rows])
ax.set_xscale("log"), ax.set_xlabel("milliseconds (log scale)")
ax.invert_yaxis(), ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What to remember
#
# - im2col turns a convolution into one matrix product, at the cost of a matrix up to
#   $K_H K_W / s^2$ times larger than the input.
# - The backward is two more matrix products and a col2im, which is im2col's transpose:
#   it sums the gradients of all the copies of a pixel.
# - `groups=2` (the paper's two GPUs) is a block-diagonal weight matrix: half the
#   weights, one product per group.
# - The gradient check agrees to a few times $10^{-6}$ or better (a bug gives $10^{-3}$ or worse):
#   the backward is right.
#
# **Question.** AlexNet's conv1 has an 11x11 kernel and stride 4. How many times
# larger than the image is its im2col matrix, and why is a larger stride cheaper?
#
# <details><summary>Answer</summary>
#
# Each output position copies a $3 \times 11 \times 11$ window, and there are
# $55 \times 55$ positions: $363 \cdot 3025$ entries against $3 \cdot 227^2$ for the
# image, about 7.1 times (the printout above). The factor is roughly
# $K_H K_W / s^2 = 121 / 16$: a stride of $s$ divides the number of windows by $s^2$
# along the two axes, and with it the number of copies of each pixel.
#
# </details>
