# %% [markdown]
# # 7. Data and augmentation
#
# The paper's preprocessing is short (Sections 2 and 4.1):
#
# 1. rescale each image so its shorter side is 256 and take the central 256x256 crop;
# 2. subtract the **mean image** of the training set from every image;
# 3. train on random 224x224 (227 here, notebook 6) **crops** and their horizontal
#    **reflections**;
# 4. shift the colour of each training image along the principal components of the
#    RGB values ("**fancy PCA**");
# 5. test on **ten crops** (four corners, centre, and their reflections), averaging the
#    ten softmax outputs.
#
# The code is `data/augment.py` (each step, on whole batches) and `data/loader.py`
# (the steps chained into batches). You write the ten test crops and their averaging
# yourself, into the stubs of the cells tagged `exercise`; the cell under each checks
# yours and prints `PASS`, `FAIL` (with where) or `not written yet`. Reference
# solutions: `notebooks/solutions/07_data_and_augmentation.py`.
#
# **About the pictures.** We have no RGB photographs offline (the bundled dataset is
# the grayscale Fashion-MNIST subset). Steps 2, 3 and 5 are shown on Fashion-MNIST;
# for the colour steps we **synthesize** a small set of RGB "landscapes" (sky, sun,
# ground, a few blocks). They are not ImageNet, so their colour statistics are not
# ImageNet's; we also apply the ImageNet colour PCA that is commonly published, to
# show what the paper's augmentation does to a picture.

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
np.set_printoptions(precision=4, suppress=True, linewidth=110)

from data import augment
from data.augment import (TEN_CROP_ORDER, mean_image, pad_images, pca_lighting, random_crops,
                            rgb_pca, ten_crop_positions, ten_crops, to_float)
from data.datasets import load_dataset

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## The mean image
#
# "We did not pre-process the images in any other way, except for subtracting the mean
# activity over the training set from each pixel." The mean is taken per pixel and per
# channel, so it is an image itself: for Fashion-MNIST, a blurry average garment.
# Pixels are first scaled to $[0, 1]$ (`augment.PIXEL_SCALE` $= 1/255$):
#
# $$x \leftarrow \frac{x_\text{uint8}}{255} - \mu, \qquad
#   \mu = \frac{1}{N}\sum_{n=1}^{N} \frac{x_n}{255}.$$
#
# That scaling is this project's choice, not the paper's: the paper subtracted the mean
# from pixel values of 0 to 255, and its N(0, 0.01) weights, biases of 1 and LRN
# constants were picked for those units. `train.py --raw-pixels` trains in them
# (`scale=1` here); He initialization, which most runs here use, expects inputs of
# about unit size instead.

# %%
ds = load_dataset("fashion-mnist-subset")
print(ds)
mean = mean_image(ds.train_x)                   # (1, 28, 28) float32
batch = to_float(ds.train_x[:6], mean)          # uint8 -> x / 255 - mean
print(f"mean image {mean.shape}, values {mean.min():.3f} to {mean.max():.3f}; "
      f"the whole training set after subtraction has mean "
      f"{float(to_float(ds.train_x, mean).mean()):.1e}")

fig, axes = plt.subplots(2, 7, figsize=(11, 3.6))
axes[0, 0].imshow(mean[0], cmap="gray"), axes[0, 0].set_title("mean image")
axes[1, 0].axis("off")
for i in range(6):
    axes[0, i + 1].imshow(ds.train_x[i, 0], cmap="gray")
    axes[0, i + 1].set_title(ds.classes[ds.train_y[i]], fontsize=9)
    lim = np.abs(batch[i, 0]).max()
    axes[1, i + 1].imshow(batch[i, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[1, i + 1].set_title("minus the mean", fontsize=9)
for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# Subtracting the mean centres the inputs around zero, so the first layer's ReLUs start
# near their kink, on both sides of it, and the gradient steps for its weights do not
# all share one sign.
#
# ## Random crops and reflections
#
# The paper trains on random 224x224 patches of the 256x256 images, each mirrored
# left-right with probability 1/2; it counts $32 \cdot 32 \cdot 2 = 2048$ versions of
# every image. Counted exactly, a 224-pixel patch has 33 positions along a 256-pixel
# axis (offsets 0 to 32), so $33 \cdot 33 \cdot 2 = 2178$; the paper's count is one short
# per axis. With 227x227 patches there are $30 \cdot 30 \cdot 2 = 1800$. The small-
# scale analog here: pad a 28x28 image by 2 (with zeros, after the mean subtraction, so
# the border is the mean image's value) and take a random 28x28 crop: $5 \cdot 5 \cdot 2
# = 50$ versions.

# %%
print(f"224 crops of 256x256: {(256 - 224 + 1) ** 2 * 2} (33 offsets per axis, 0 to 32; "
      f"the paper says {(256 - 224) ** 2 * 2})")
print(f"227 crops of 256x256: {(256 - 227 + 1) ** 2 * 2} (30 offsets per axis, 0 to 29)")
print(f"28 crops of 28x28 padded by 2: {(32 - 28 + 1) ** 2 * 2}")

one = to_float(np.repeat(ds.train_x[ds.train_y == 9][:1], 12, axis=0), mean)    # an ankle boot, 12 times
padded = pad_images(one, 2)
crops, (top, left, flipped) = random_crops(padded, 28, np.random.default_rng(3), flip=True,
                                           return_params=True)
fig, axes = plt.subplots(2, 6, figsize=(10, 3.8))
for ax, c, t, l, f in zip(axes.ravel(), crops, top, left, flipped):
    # The net sees c; adding the mean image back makes it look like a picture again
    # (the mean is not shifted or mirrored with the crop, so this is close, not exact).
    ax.imshow(c[0] + mean[0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"top {t}, left {l}{', mirrored' if f else ''}", fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Colour: PCA lighting ("fancy PCA")
#
# The paper's second augmentation alters the intensity and colour of the illumination.
# Compute the $3 \times 3$ covariance of the RGB values of all training pixels, with
# eigenvectors $p_i$ and eigenvalues $\lambda_i$. Then, each time an image is used,
# draw $\alpha_i \sim \mathcal{N}(0, 0.1^2)$ (standard deviation 0.1) and add to **every** pixel of it
#
# $$\Delta = [p_1\; p_2\; p_3]\,[\alpha_1\lambda_1,\; \alpha_2\lambda_2,\;
#   \alpha_3\lambda_3]^\top .$$
#
# The whole image moves by one RGB offset, mostly along the direction in which natural
# colours vary most. The paper: object identity is invariant to the intensity and colour
# of the illumination; it cut top-1 error by over 1%.
#
# First our synthetic RGB pictures (made here with NumPy; they stand in for photographs):

# %%
def synthetic_landscapes(n, size, seed):
    """RGB uint8 images (n, 3, size, size): a sky gradient, a sun, a textured ground,
    a few blocks. Made up, not photographs."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        top_col, horizon_col = g.uniform(0.1, 0.5, 3), g.uniform(0.5, 1.0, 3)
        top_col[2] += 0.4                                             # skies lean blue
        horizon = g.uniform(0.5, 0.75)
        t = np.clip(yy / horizon, 0, 1)[None]
        img = (1 - t) * top_col[:, None, None] + t * horizon_col[:, None, None]
        cy, cx, r = g.uniform(0.1, 0.4), g.uniform(0.1, 0.9), g.uniform(0.04, 0.1)
        sun = ((yy - cy) ** 2 + (xx - cx) ** 2) < r ** 2
        img[:, sun] = g.uniform(0.8, 1.0, 3)[:, None] * [[1.0], [0.9], [0.5]]
        ground = g.uniform(0.15, 0.5, 3) * [1.0, 1.2, 0.6]
        texture = 0.06 * np.kron(g.standard_normal((size // 8, size // 8)), np.ones((8, 8)))
        below = yy > horizon
        img[:, below] = (ground[:, None] + texture[below]) * (0.6 + 0.6 * (1 - yy[below]))
        for _ in range(g.integers(1, 4)):                            # blocks on the horizon
            w, h = g.uniform(0.05, 0.2), g.uniform(0.1, 0.35)
            x0 = g.uniform(0, 1 - w)
            block = (xx > x0) & (xx < x0 + w) & (yy > horizon - h) & (yy < horizon + 0.02)
            img[:, block] = g.uniform(0.05, 0.9, 3)[:, None]
        out[i] = np.clip(255 * img, 0, 255).astype(np.uint8)
    return out


rgb = synthetic_landscapes(24 if SMALL else 64, 256, seed=0)
fig, axes = plt.subplots(1, 8, figsize=(11, 1.6))
for ax, im in zip(axes, rgb):
    ax.imshow(im.transpose(1, 2, 0)), ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# `rgb_pca` computes the eigenvalues and eigenvectors of their RGB covariance (in the
# same $[0, 1]$ units as the pipeline). For comparison, the values commonly used for
# ImageNet (they circulate with several public training codes, e.g. fb.resnet.torch,
# in the same units):

# %%
eigvals, eigvecs = rgb_pca(rgb)
print("our synthetic set:  eigenvalues", eigvals, "\n  eigenvectors (columns):\n", eigvecs)
IMAGENET_EIGVALS = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
IMAGENET_EIGVECS = np.array([[-0.5675, 0.7192, 0.4009],
                             [-0.5808, -0.0045, -0.8140],
                             [-0.5836, -0.6948, 0.4203]], dtype=np.float32)
print("ImageNet (published): eigenvalues", IMAGENET_EIGVALS,
      "\n  first eigenvector", IMAGENET_EIGVECS[:, 0], "~ -(1, 1, 1)/sqrt(3): brightness")

# %% [markdown]
# The first component of natural images is close to $(1, 1, 1)/\sqrt 3$: overall
# brightness. The second runs from red to blue (warm to cold light), the third is
# smaller still. Now the augmentation itself, `pca_lighting`, on three of our pictures:
# each row shows one picture with five random draws of $\alpha$, using our pictures'
# own components (first row) or ImageNet's (the other two). With the paper's
# $\sigma = 0.1$ the changes are subtle (a few percent of the range, as intended); the
# last row uses $\sigma = 0.5$, exaggerated, only to make the direction visible.

# %%
pics = to_float(rgb[:3])                      # in [0, 1], no mean subtracted, to look at
gen = np.random.default_rng(1)
cases = [("our PCA\nsigma 0.1", eigvals, eigvecs, 0.1),
         ("ImageNet PCA\nsigma 0.1", IMAGENET_EIGVALS, IMAGENET_EIGVECS, 0.1),
         ("ImageNet PCA\nsigma 0.5 (x5)", IMAGENET_EIGVALS, IMAGENET_EIGVECS, 0.5)]
fig, axes = plt.subplots(len(cases), 6, figsize=(10, 5.2))
for row, (title, vals, vecs, std) in enumerate(cases):
    img = np.repeat(pics[row:row + 1], 5, axis=0)
    shifted, alphas = pca_lighting(img, vals, vecs, rng=gen, std=std, return_alphas=True)
    axes[row, 0].imshow(pics[row].transpose(1, 2, 0))
    axes[row, 0].set_ylabel(title, fontsize=8)
    axes[row, 0].set_title("original", fontsize=8)
    for k in range(5):
        delta = shifted[k, :, 0, 0] - img[k, :, 0, 0]
        axes[row, k + 1].imshow(np.clip(shifted[k].transpose(1, 2, 0), 0, 1))
        axes[row, k + 1].set_title("RGB shift " + " ".join(f"{v:+.3f}" for v in delta), fontsize=7)
for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The ten test crops
#
# At test time the paper took the four corner patches, the centre patch, and the
# reflections of all five, and averaged the network's softmax outputs over the ten.
# `ten_crops` returns them as one array of shape (10, N, C, crop, crop), in this order:

# %%
print(TEN_CROP_ORDER)
print("paper scale, 227 crops of 256x256: (top, left) =", ten_crop_positions(256, 256, 227))
scene = to_float(rgb[:1])
tens = ten_crops(scene, 227)
print("ten_crops of one 3x256x256 image:", tens.shape)

fig, axes = plt.subplots(2, 5, figsize=(9, 4.2))
for ax, crop, name in zip(axes.ravel(), tens[:, 0], TEN_CROP_ORDER):
    ax.imshow(crop.transpose(1, 2, 0))
    ax.set_title(name, fontsize=9), ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The same on a Fashion-MNIST image, padded by 2 (the crops move by at most 4 pixels):

# %%
boot = pad_images(to_float(ds.test_x[:1], mean), 2)
tens = ten_crops(boot, 28)
fig, axes = plt.subplots(1, 10, figsize=(12, 1.7))
for ax, crop, name in zip(axes, tens[:, 0], TEN_CROP_ORDER):
    ax.imshow(crop[0] + mean[0], cmap="gray", vmin=0, vmax=1)   # close, as above
    ax.set_title(name.replace(" flipped", "\nflipped"), fontsize=7), ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise 1: the ten crops
#
# Write `ten_crops` yourself: the four corners, the centre (offsets
# $\lfloor (H - c)/2 \rfloor$, $\lfloor (W - c)/2 \rfloor$), then the same five mirrored
# left-right (`[..., ::-1]`), stacked into one array (10, N, C, c, c) in
# `TEN_CROP_ORDER`.

# %% tags=["exercise-setup"]
# What the exercises use: the checks (notebooks/exercises.py).
import numpy as np
from notebooks.exercises import check_ten_crop_average, check_ten_crops

# %% tags=["exercise"]
def my_ten_crops(x, crop):
    """x: (N, C, H, W) -> (10, N, C, crop, crop), in TEN_CROP_ORDER."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_ten_crops(my_ten_crops)

# %% [markdown]
# ### The average over the crops, written out
#
# The network gives each crop $t = 1 \ldots 10$ of an image its logits $z^{(t)}$. The
# paper's prediction is the **mean of the ten softmax outputs**,
#
# $$\bar p_k = \frac{1}{10} \sum_{t=1}^{10} \frac{e^{z^{(t)}_k}}{\sum_j e^{z^{(t)}_j}},
#   \qquad \hat y = \arg\max_k \bar p_k ,$$
#
# a vote in which each crop spends one unit of probability. It is not the softmax of
# the mean logits: a crop with huge logits would outvote the other nine there. Notebook
# 8 does this with a trained network and compares it with `train.py`'s ten-crop error.
#
# ### Exercise 2: the average
#
# Given the logits of the ten crops, shaped (10, N, K), return $\bar p$ (N, K). Write
# the softmax in its stable form (notebook 2).

# %% tags=["exercise"]
def my_ten_crop_average(logits):
    """logits: (10, N, K), one row of K class scores per crop and image -> (N, K)."""
    # YOUR CODE HERE
    raise NotImplementedError


# %% tags=["check"]
check_ten_crop_average(my_ten_crop_average)

# %% [markdown]
# **Question.** Why is a mirrored crop a fair test-time view of a Fashion-MNIST image,
# and why would it not be for MNIST digits?
#
# <details><summary>Answer</summary>
#
# A mirrored shirt or shoe is still a shirt or shoe, and the network was trained on
# mirrored images (random reflections), so the mirror is another view of the same
# class. A mirrored digit can be another symbol or none (a mirrored 2 or 7), and a
# network trained without reflections never saw such an image: for MNIST `train.py`
# uses the five crops without mirrors (`ten_crops(..., mirrors=False)`).
#
# </details>
#
# ## All together: the training batches
#
# `BatchLoader` chains the steps for every batch, as `train.py` uses it:
# uint8 $\to$ $x/255 - \mu$ $\to$ pad $\to$ random crop and reflection $\to$ PCA lighting.
# Its randomness is seeded by (seed, epoch, batch), so a run can be repeated exactly.
# Here, a batch of our synthetic pictures at the paper's geometry (256 $\to$ 227),
# each rescaled to $[0, 1]$ for display (the network sees them mean-subtracted):

# %%
from data.loader import BatchLoader

labels = np.zeros(len(rgb), dtype=np.int64)
rgb_mean = mean_image(rgb)
loader = BatchLoader(rgb, labels, batch_size=8, seed=0, mean=rgb_mean, crop=227, flip=True,
                     pca=(eigvals, eigvecs), prefetch=False)
xb, yb = next(iter(loader))
print(f"one batch: {xb.shape} {xb.dtype}, mean {float(xb.mean()):+.3f} (about 0: the mean image "
      f"is subtracted)")
fig, axes = plt.subplots(1, 8, figsize=(12, 1.8))
for ax, im in zip(axes, xb):
    ax.imshow(((im - im.min()) / (im.max() - im.min())).transpose(1, 2, 0))   # rescaled to show
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What to remember
#
# - Subtract the training set's mean image (per pixel, per channel), and nothing else.
# - Random crops and reflections make each image thousands of slightly different
#   training examples; the ten test crops average the network's opinion over the same
#   kind of variation.
# - PCA lighting adds one RGB offset per image, along the principal directions of the
#   training set's colours, scaled by their eigenvalues: mostly a change of brightness,
#   a little a change of colour temperature.
# - Compute the PCA in the same units (here $[0, 1]$) as the pipeline, or the shifts
#   are off by a factor of $255^2$.
