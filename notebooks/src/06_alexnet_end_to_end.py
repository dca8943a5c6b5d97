# %% [markdown]
# # 6. AlexNet end to end
#
# The previous notebooks took the layers one at a time. Here they are put together
# into the network of the paper's Figure 2: five convolutional layers and three fully
# connected ones, about 60 million parameters and 650,000 neurons (Section 3.5).
#
# 1. the layer table, with shapes and parameter counts;
# 2. where the parameters are and where the arithmetic is;
# 3. why the input is 227x227 and not the 224x224 the paper states;
# 4. one forward and backward pass through the full network;
# 5. a gradient check of the **whole** network (the `tiny` preset), every parameter
#    against centered differences.
#
# The network is `alexnet.py`; the layers are those of `layers/`.

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

from alexnet import AlexNet
from engine.im2col import conv_output_size
from layers.modules import Conv2d, Linear
from layers.loss import softmax_cross_entropy

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## The layer table
#
# `AlexNet('paper')` builds the network for 3x227x227 images and 1000 classes, with the
# two-GPU connectivity (`groups=2` in conv2, conv4 and conv5, notebook 1). Its summary
# lists every layer, the shape of its output for one image, and its parameters:

# %%
net = AlexNet("paper")
print(net.summary())
assert net.num_params() == 60_965_224

# %% [markdown]
# The counts follow from the shapes. A convolution with $F$ filters of
# $C/g \times K \times K$ has $F (C/g) K^2 + F$ parameters; a fully connected layer
# from $D$ to $F$ units has $F D + F$:

# %%
by_hand = {
    "conv1": 96 * 3 * 11 * 11 + 96,
    "conv2": 256 * (96 // 2) * 5 * 5 + 256,
    "conv3": 384 * 256 * 3 * 3 + 384,
    "conv4": 384 * (384 // 2) * 3 * 3 + 384,
    "conv5": 256 * (384 // 2) * 3 * 3 + 256,
    "fc6": 4096 * (256 * 6 * 6) + 4096,
    "fc7": 4096 * 4096 + 4096,
    "fc8": 1000 * 4096 + 1000,
}
for name, n in by_hand.items():
    layer = net.layer(name)
    counted = sum(v.size for v in layer.params.values())
    print(f"{name}: {n:>12,}  {'=' if n == counted else '!='} the model's {counted:,}")
print(f"total: {sum(by_hand.values()):,}")
print(f"without the two-GPU split (groups=1): {AlexNet('paper', groups=1).num_params():,}")

# %% [markdown]
# ## Where the parameters are, and where the arithmetic is
#
# The paper's "650,000 neurons" are the outputs of the eight weight layers. The
# parameters sit mostly in fc6 (37.7 million, 62% of the total), but the work, counted
# as multiply-adds per image, is mostly in the convolutions, because each conv weight
# is used at every position of its output map:

# %%
shapes = dict(net.layer_shapes)
names, params, macs, neurons = [], [], [], []
for name, layer in net.layers:
    if isinstance(layer, Conv2d):
        F, Cg, KH, KW = layer.params["w"].shape
        _, OH, OW = shapes[name]
        macs.append(F * Cg * KH * KW * OH * OW)
    elif isinstance(layer, Linear):
        macs.append(layer.params["w"].size)
    else:
        continue
    names.append(name)
    params.append(sum(v.size for v in layer.params.values()))
    neurons.append(int(np.prod(shapes[name])))
params, macs = np.array(params), np.array(macs)
print(f"neurons (outputs of the weight layers): {sum(neurons):,}")
print(f"multiply-adds per image: {macs.sum() / 1e6:.0f} million, "
      f"{100 * macs[:5].sum() / macs.sum():.0f}% of them in the convolutions, which hold "
      f"{100 * params[:5].sum() / params.sum():.0f}% of the parameters")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].bar(names, params / 1e6, color="C0")
axes[0].set_ylabel("parameters (millions)")
axes[1].bar(names, macs / 1e6, color="C1")
axes[1].set_ylabel("multiply-adds per image (millions)")
for ax in axes:
    ax.set_xlabel("weight layer")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Why 227 and not 224
#
# The paper says the input is 224x224x3 and conv1 is 96 kernels of 11x11 with stride
# 4, giving 55x55 maps. But
#
# $$\left\lfloor \frac{224 - 11}{4} \right\rfloor + 1 = 54, \qquad
#   \frac{227 - 11}{4} + 1 = 55 .$$
#
# 224 gives 55 only with padding, 2 pixels at the least, which the paper does not mention (and
# then the last padded column is never read). The arithmetic fits 227 exactly, with
# no padding, which is what Caffe's reference model used, and so do we. With a 224
# input and no padding every map is smaller, and fc6 sees 5x5 maps instead of 6x6:

# %%
print("conv1 output:", conv_output_size(224, 11, 4), "from 224,",
      conv_output_size(227, 11, 4), "from 227,",
      conv_output_size(224, 11, 4, pad=2), "from 224 padded by 2")
net224 = AlexNet("paper", input_size=224)
for name in ("conv1", "pool1", "pool2", "pool5"):
    print(f"{name}: {dict(net.layer_shapes)[name]} from 227, {dict(net224.layer_shapes)[name]} from 224")
print(f"fc6 weights: {net.layer('fc6').params['w'].shape} from 227, "
      f"{net224.layer('fc6').params['w'].shape} from 224 -> {net224.num_params():,} parameters")
del net224

# %% [markdown]
# ## One forward and backward pass
#
# A batch of random images goes through every layer; the loss is the softmax
# cross-entropy against random labels, and `backward` sends its gradient back through
# every layer, filling `net.grads` (same keys and shapes as `net.params`). We time each
# layer, calling the layer objects one by one as `net.forward` does, for a batch of one
# image and for a larger one.

# %%
def timed_pass(net, N):
    x = rng.standard_normal((N, 3, 227, 227)).astype(np.float32)
    y = rng.integers(0, 1000, size=N)
    fwd_t, bwd_t = {}, {}
    h = x
    for name, layer in net.layers:
        t0 = time.perf_counter()
        h = layer.forward(h, train=True)
        fwd_t[name] = time.perf_counter() - t0
    loss, d = softmax_cross_entropy(h, y)
    for name, layer in reversed(net.layers):
        t0 = time.perf_counter()
        d = layer.backward(d)
        bwd_t[name] = time.perf_counter() - t0
    return h, loss, d, fwd_t, bwd_t


layer_names = [n for n, _ in net.layers]
timings = {}
for N in ((1, 2) if SMALL else (1, 32)):
    logits, loss, dx, fwd_t, bwd_t = timed_pass(net, N)
    timings[N] = (fwd_t, bwd_t)
    total = {n: fwd_t[n] + bwd_t[n] for n in layer_names}
    conv = sum(t for n, t in total.items() if n.startswith("conv"))
    fc = sum(t for n, t in total.items() if n.startswith("fc"))
    print(f"batch of {N}: logits {logits.shape} (spread over the classes: standard "
          f"deviation {float(logits.std(axis=1).mean()):.2f}), loss {float(loss):.2f}, "
          f"dL/dx {dx.shape}; "
          f"forward {sum(fwd_t.values()):.2f} s, backward {sum(bwd_t.values()):.2f} s; "
          f"convs {100 * conv / sum(total.values()):.0f}% of the time, fc layers "
          f"{100 * fc / sum(total.values()):.0f}%")

grads = net.grads
assert all(grads[k].shape == v.shape for k, v in net.params.items())
for name in ("conv1", "conv2", "fc6", "fc8"):
    print(f"  mean |gradient| of {name}.w: {np.abs(grads[name + '.w']).mean():.2e}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=False)
for ax, (N, (fwd_t, bwd_t)) in zip(axes, timings.items()):
    ax.bar(layer_names, [1e3 * fwd_t[n] for n in layer_names], label="forward")
    ax.bar(layer_names, [1e3 * bwd_t[n] for n in layer_names],
           bottom=[1e3 * fwd_t[n] for n in layer_names], label="backward")
    ax.set_ylabel("milliseconds"), ax.set_title(f"time per layer, batch of {N} at 227x227")
    ax.tick_params(axis="x", rotation=80, labelsize=8)
    ax.set_xlabel("layer")
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# A uniform guess over 1000 classes would cost $\log 1000 = 6.9$ (notebook 2). The
# untrained network's loss is above that (see the printouts). Its logits are not
# equal: they spread over the classes with a standard deviation of one to two units
# (printed; the training-mode dropout adds to it), in almost the same pattern for every image, since
# the biases of 1 in fc6 and fc7 carry more than the input does. The loss of an image
# is log(sum of exp(logits)) minus its label's logit: a spread raises the first term
# above log 1000 (by about half the variance for a normal spread), and an image whose
# label falls on a low logit costs more again. One image can land far from the mean;
# a batch of 32 averages them.
#
# Where the time goes depends on the batch. The backward of a fully
# connected layer writes a gradient the size of its weights (37.7 million numbers for
# fc6) once per batch, however many images the batch holds, and its forward reads all
# those weights: with one image, that memory traffic gives the fc layers a share of the
# time far above their share of the arithmetic. A convolution's work grows with every
# image, so with a larger batch the fc layers' share shrinks (compare the two
# printouts: the rest is ReLU, LRN and pooling); per image the convolutions
# do over 90% of the multiply-adds.
#
# ## A gradient check of the whole network
#
# Each layer's backward was checked on its own in notebooks 1-5. Putting them
# together can still go wrong (a wrong cache, a flatten in the wrong order, a
# gradient overwritten instead of returned), so the whole network gets a check too:
# `gradcheck.tiny_model_check` builds the `tiny` preset in float64, with
# He initialization, every layer of the paper in it (conv, ReLU, LRN, overlapping
# pooling, dropout with its masks held fixed, fc, softmax loss). For a few entries of
# **every** parameter it compares $\partial L / \partial \theta$ from `backward` with
#
# $$\frac{L(\theta + h) - L(\theta - h)}{2h}, \qquad h = 10^{-6}.$$

# %%
from engine.gradcheck import format_table
from gradcheck import tiny_model_check

print(AlexNet("tiny", init="he", dtype=np.float64).summary())
t0 = time.perf_counter()
results = tiny_model_check(max_checks=3 if SMALL else 10)
print(f"\n{format_table(results)}\n({time.perf_counter() - t0:.1f} s)")
assert all(r.passed for r in results)

# %% [markdown]
# Every parameter of every layer agrees with centered differences: the hand-written
# backward of the whole network is the gradient of its loss.
#
# ## What to remember
#
# - 60,965,224 parameters, 62% of them in fc6; but over 90% of the arithmetic is in
#   the five convolutions.
# - 227, not 224: that is the size for which conv1's 11x11 stride-4 windows give 55x55.
# - A whole-network gradient check catches what per-layer checks cannot: the wiring.
#
# How `backward` passes the gradient from layer to layer (each layer's cache, the
# order, the shapes), and the fully connected layers' own backward, which hold 96%
# of these parameters, are the subject of notebook 12, where you write them.
