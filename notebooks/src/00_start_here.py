# %% [markdown]
# # 0. Start here
#
# These notebooks take AlexNet (Krizhevsky, Sutskever and Hinton, *ImageNet
# Classification with Deep Convolutional Neural Networks*, NIPS 2012) apart one idea at
# a time, with this project's own code: NumPy, no autograd, every backward written by
# hand next to its forward. This one is the map:
#
# 1. the network, drawn from the model's own layer table;
# 2. which notebook teaches which section of the paper, and how long each takes to run;
# 3. how the exercises work;
# 4. the two sanity checks to run before any training: the loss at initialization,
#    and a small batch overfitted to nearly zero loss.

# %%
import json
import os
import sys
import tempfile

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

print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## The network
#
# `AlexNet('paper')` is the network of the paper's Figure 2, for 3x227x227 images and
# 1000 classes. Its summary is its layer table; `scripts/draw_network.py` draws the
# picture below from that table (each box is a conv or fc layer, drawn at the shape of
# its block's output; the layers after it are listed under it), so the picture shows
# what the code builds, not what someone typed.

# %%
import importlib.util

from IPython import get_ipython
from IPython.display import Image, display

net = AlexNet("paper")
print(net.summary())

spec = importlib.util.spec_from_file_location("draw_network",
                                              os.path.join(ROOT, "scripts", "draw_network.py"))
draw_network = importlib.util.module_from_spec(spec)
sys.modules["draw_network"] = draw_network          # its dataclass looks itself up
spec.loader.exec_module(draw_network)
with tempfile.TemporaryDirectory(prefix="alexnet-nb00-") as folder:
    picture = os.path.join(folder, "alexnet.png")
    draw_network.draw(net, picture)
    display(Image(filename=picture, width=900))
# the drawing switched matplotlib to its file-only backend; back to the notebook's
get_ipython().run_line_magic("matplotlib", "inline")
plt.rcParams.update({"figure.dpi": 100, "figure.figsize": (9, 3.5)})

# %% [markdown]
# The `mini` and `tiny` presets are the same sequence of layers, narrower, for 28x28
# grayscale images (Fashion-MNIST): `mini` is what the recorded results train, `tiny`
# what the notebooks train in seconds.

# %%
for preset in ("paper", "mini", "tiny"):
    model = AlexNet(preset)
    c = model.config
    print(f"{preset:<6} {c['in_channels']}x{c['input_size']}x{c['input_size']} in, "
          f"{c['num_classes']} classes out, {model.num_params():>11,} parameters, "
          f"{len(model.layers)} layers")

# %% [markdown]
# ## The paper, section by section
#
# | paper | what it says | notebook |
# |---|---|---|
# | 2, The dataset | the mean image subtracted, nothing else | [7](07_data_and_augmentation.ipynb) |
# | 3.1, ReLU nonlinearity | ReLUs train several times faster than tanh (Figure 1) | [2](02_activations_and_loss.ipynb), [10](10_the_papers_claims.ipynb) |
# | 3.2, Training on multiple GPUs | the two-GPU split: grouped convolutions | [1](01_convolution_im2col.ipynb), [6](06_alexnet_end_to_end.ipynb), [9](09_gpu.ipynb) |
# | 3.3, Local response normalization | the formula, its constants | [3](03_local_response_normalization.ipynb) |
# | 3.4, Overlapping pooling | 3x3 windows, stride 2 | [4](04_overlapping_max_pooling.ipynb) |
# | 3.5, Overall architecture | eight weight layers, 60 million parameters | [6](06_alexnet_end_to_end.ipynb), [12](12_fully_connected_and_backprop.ipynb) |
# | 4.1, Data augmentation | crops, reflections, PCA colour, ten test crops | [7](07_data_and_augmentation.ipynb), [8](08_training_fashion_mnist.ipynb) |
# | 4.2, Dropout | zero half of fc6's and fc7's units | [5](05_dropout.ipynb) |
# | 5, Details of learning | SGD with momentum and weight decay, the initialization, the schedule | [11](11_sgd_and_initialization.ipynb), [8](08_training_fashion_mnist.ipynb) |
# | 6, Results | top-1 and top-5 error, averaging networks | [8](08_training_fashion_mnist.ipynb), [10](10_the_papers_claims.ipynb) |
# | 6.1, Qualitative evaluations | the first-layer kernels (Figure 3), neighbours by fc7 (Figure 4) | [8](08_training_fashion_mnist.ipynb) |
# | every claim above, tested | with seeds and a verdict rule, at three scales | [10](10_the_papers_claims.ipynb) |
#
# Every backward pass is built from the ops of notebooks 1 to 5 and 12; read 12 after
# 6. How long each notebook took to run, top to bottom at its normal size, on the
# project's development machine (2 CPU cores, no GPU), as recorded in
# `notebooks/timings.json` when the committed notebooks were made:

# %%
with open(os.path.join(ROOT, "notebooks", "timings.json")) as f:
    timings = json.load(f)
print(timings["machine"])
for name, seconds in timings["seconds"].items():
    when = "not recorded" if seconds is None else f"{seconds:5.0f} s"
    print(f"  {name:<36} {when}")

# %% [markdown]
# ## How the exercises work
#
# Notebooks 1 to 5, 7, 11 and 12 ask you to write the ops yourself: a forward by
# loops, a backward through im2col, LRN's backward, max-pooling's backward where
# windows overlap, both forms of dropout, the softmax cross-entropy gradient, the ten
# test crops, the SGD update, the fully connected layer's backward and the whole
# classifier's. Each blank is a function stub in a cell tagged `exercise`:
#
# ```python
# def my_relu_backward(dout, x):
#     """dx for out = max(0, x)."""
#     # YOUR CODE HERE
#     raise NotImplementedError
# ```
#
# and the cell right under it, tagged `check`, runs `check_relu_backward(my_relu_backward)`
# from `notebooks/exercises.py`: random inputs, your function against the project's op,
# a gradient check where there is a backward, and one line printed: `PASS` with the
# error, `FAIL` with the largest difference and where it is, or `not written yet`. A
# notebook runs top to bottom with its blanks untouched. The reference solutions are in
# `notebooks/solutions/`, one file per notebook; look after trying. Questions are asked
# inline, with their answers folded away: open one when you have an answer of your own.
#
# Here is one check, with a wrong answer (the sign of the mask flipped) and then the
# right one:

# %%
from notebooks.exercises import check_relu_backward


def my_relu_backward(dout, x):
    return dout * (x < 0)                      # wrong on purpose


check_relu_backward(my_relu_backward)


def my_relu_backward(dout, x):
    return dout * (x > 0)


check_relu_backward(my_relu_backward)

# %% [markdown]
# ## Before any training: two sanity checks
#
# **The loss at initialization.** A network that knows nothing spreads its probability
# over the $K$ classes, and its cross-entropy is then $\ln K$: 2.30 for Fashion-MNIST's
# 10 classes. A freshly initialized network should start near that. Far above it
# (5, 50, NaN) means the initial logits are large and confidently wrong: weights or
# inputs too large, the mean image not subtracted, pixels not scaled. The `tiny` and
# `mini` nets with He initialization, on 256 training images, in test mode (no dropout),
# and the same `tiny` net with every weight made three times larger:

# %%
from data.augment import mean_image
from data.datasets import load_dataset
from data.loader import iterate_eval
from layers.loss import softmax_cross_entropy

ds = load_dataset("fashion-mnist-subset")
mean = mean_image(ds.train_x)
xb, yb = next(iter(iterate_eval(ds.train_x[:256], ds.train_y[:256], 256, mean=mean)))
print(f"chance: ln 10 = {np.log(10):.3f}")
for label, preset, scale in [("tiny, He init", "tiny", 1), ("mini, He init", "mini", 1),
                             ("tiny, every weight x3", "tiny", 3)]:
    model = AlexNet(preset, init="he", seed=0)
    for k, v in model.params.items():
        if k.endswith(".w"):
            v *= scale
    loss, _ = softmax_cross_entropy(model.forward(xb, train=False), yb)
    print(f"{label:<22} loss at initialization {float(loss):8.3f}")

# %% [markdown]
# The He-initialized nets start within about half a unit of $\ln 10$ (their logits
# are not all equal: notebook 6 says why); with the weights three times larger the
# loss is far above chance, and that run would spend its first steps undoing it.
#
# **Overfit one small batch.** Twenty training images, two of each class, and nothing
# that fights memorizing (no dropout, no weight decay, no augmentation): a network with
# a correct forward and backward drives their loss to nearly zero within a hundred
# steps. If it cannot, something is broken (a backward, the learning rate, the
# labels), and no amount of training on the full data will tell you what.

# %%
from engine.optim import SGD

pick = np.concatenate([np.flatnonzero(ds.train_y == c)[:2] for c in range(10)])
x20, y20 = next(iter(iterate_eval(ds.train_x[pick], ds.train_y[pick], 20, mean=mean)))
model = AlexNet("tiny", init="he", dropout=0.0, seed=0)
opt = SGD(model.params, lr=0.01, momentum=0.9, weight_decay=0.0)
STEPS = 30 if SMALL else 100
losses = []
for step in range(STEPS):
    loss, dlogits = softmax_cross_entropy(model.forward(x20, train=True), y20)
    model.backward(dlogits, input_grad=False)
    opt.step(model.grads)
    losses.append(float(loss))
print(f"loss {losses[0]:.3f} at the first step, {losses[-1]:.5f} after {STEPS}")

fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.semilogy(np.arange(1, STEPS + 1), losses)
ax.axhline(np.log(10), color="0.6", ls=":", label="chance, ln 10")
ax.set_xlabel("step (the same 20 images every time)"), ax.set_ylabel("training loss (log scale)")
ax.set_title("tiny AlexNet memorizing 20 images")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where to go next
#
# In order: [1](01_convolution_im2col.ipynb) to [5](05_dropout.ipynb) take the layers
# one at a time, [6](06_alexnet_end_to_end.ipynb) puts them together,
# [12](12_fully_connected_and_backprop.ipynb) follows the gradient back through all of
# them, [7](07_data_and_augmentation.ipynb) and [8](08_training_fashion_mnist.ipynb)
# prepare the data and train, [11](11_sgd_and_initialization.ipynb) looks at the
# optimizer and the initialization, [10](10_the_papers_claims.ipynb) tests the paper's
# claims, and [9](09_gpu.ipynb) runs it all on a GPU.
