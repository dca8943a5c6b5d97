# %% [markdown]
# # 9. The GPU
#
# The paper trained for five to six days on two GTX 580 GPUs; on a CPU the same
# network would have taken months. This project runs **the same code** on the CPU
# (NumPy) and on an NVIDIA GPU (CuPy): every op is written once, against NumPy's
# interface, and a few of its inner loops take a different route on the GPU for
# speed (the section "Few large calls"), checked against the CPU's.
#
# 1. how one function serves both backends;
# 2. moving a model and data to the GPU, and back;
# 3. the same results on both, to float32 rounding;
# 4. the time of both backends side by side, here and as recorded on an NVIDIA H200;
# 5. in an appendix: why a loop that is fast on the CPU is slow on the GPU, what
#    replaces it, and how many calls a training step makes on each route.
#
# On a machine without a usable GPU (no CuPy, no CUDA device), the notebook says so,
# runs everything on the CPU, and still runs to the end. **The outputs committed with
# this notebook come from such a machine** (a CPU; "GPU usable: False" below); what a
# GPU did is in the section "On an NVIDIA H200", from the recorded measurements. The
# code is `engine/backend.py`.

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

from engine.backend import (device_of, get_array_module, gpu_status, synchronize, to_device,
                            to_numpy)

rng = np.random.default_rng(0)
print("small mode" if SMALL else "normal size")

# %% [markdown]
# ## Is there a GPU?
#
# `gpu_status()` answers honestly, with the reason: CuPy must import, see a CUDA
# device, and actually run a kernel on it (a driver that does not match only shows
# then).

# %%
GPU, reason = gpu_status()
print("GPU usable:", GPU)
print(reason)
DEVICES = ["cpu", "cuda"] if GPU else ["cpu"]
if not GPU:
    print("\nNo GPU here: every cell below runs on the CPU only, and the GPU columns are "
          "left out. Run this notebook on a machine with an NVIDIA GPU and CuPy "
          "(pip install -e '.[cuda12]') to see both.")

# %% [markdown]
# ## One function, two backends
#
# CuPy copies NumPy's interface: `cupy.matmul`, `cupy.maximum`, slicing, broadcasting
# all behave as in NumPy, but run on the GPU. So an op never imports NumPy to compute;
# its first line asks its input which module it belongs to,
#
# ```python
# xp = get_array_module(x)      # numpy for a NumPy array, cupy for a CuPy array
# out = xp.maximum(x, 0)
# ```
#
# and everything after that works on either. Host-device copies happen only at the
# edges: the data pipeline, the metrics, checkpoints. These functions of `layers/` ask
# their inputs for the module (the others only use methods and operators of the arrays
# they are given, like `dout * mask`, which work on both anyway):

# %%
import inspect

import layers.activations, layers.conv, layers.dropout, layers.loss, layers.lrn, layers.pool

for module in (layers.conv, layers.activations, layers.lrn, layers.pool, layers.dropout,
               layers.loss):
    asking = [name for name, f in inspect.getmembers(module, inspect.isfunction)
              if f.__module__ == module.__name__ and not name.startswith("_")
              and "get_array_module(" in inspect.getsource(f)]
    print(f"{module.__name__:<20} {', '.join(asking)}")
x = rng.standard_normal((2, 3)).astype(np.float32)
print("\nget_array_module(a NumPy array) is", get_array_module(x).__name__)
if GPU:
    print("get_array_module(a CuPy array) is", get_array_module(to_device(x, "cuda")).__name__)

# %% [markdown]
# ## Moving a model and data
#
# `to_device(x, 'cuda')` copies an array to the GPU (a CuPy array), `to_device(x, 'cpu')`
# or `to_numpy(x)` brings it back. `model.to('cuda')` moves every parameter and
# gradient of a model. A model refuses an input that lives elsewhere, with an error
# that says what to do, rather than failing deep inside a layer.

# %%
from alexnet import AlexNet

model = AlexNet("tiny", init="he", seed=0)
x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
print("model on", model.device, "- input on", device_of(x))
if GPU:
    try:
        model.forward(to_device(x, "cuda"), train=False)
    except ValueError as e:
        print("mixing devices:", e)
    model.to("cuda")
    print("after model.to('cuda'): conv1.w is a", type(model.params["conv1.w"]).__module__,
          "array on", device_of(model.params["conv1.w"]))
    model.to("cpu")
else:
    try:
        model.to("cuda")
    except Exception as e:           # GPUUnavailableError: says what is missing
        print(f"model.to('cuda') without a GPU: {type(e).__name__}: {e}")

# %% [markdown]
# ## The same results on both
#
# The same weights and the same images through the network on each backend. The
# outputs should differ only by float32 rounding (the GPU sums in a different order),
# around $10^{-6}$ relative; the same holds for the gradients. The test suite holds
# the GPU to this (`tests/test_alexnet.py`, within $10^{-4}$, and every op's tests);
# on a machine without one ("GPU usable: False" above) the cell below shows the CPU's
# side only.

# %%
from layers.loss import softmax_cross_entropy

x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
y = rng.integers(0, 10, size=8)
outs = {}
for dev in DEVICES:
    model = AlexNet("tiny", init="he", seed=0).to(dev)
    logits = model.forward(to_device(x, dev), train=True)
    loss, dlogits = softmax_cross_entropy(logits, to_device(y, dev))
    model.backward(dlogits)
    outs[dev] = (to_numpy(logits), float(loss), to_numpy(model.grads["conv1.w"]))
    print(f"{dev}: loss {outs[dev][1]:.6f}, logits[0, :4] {outs[dev][0][0, :4]}")
if GPU:
    (lc, _, gc), (lg, _, gg) = outs["cpu"], outs["cuda"]
    print(f"largest relative difference: logits {np.abs(lc - lg).max() / np.abs(lc).max():.1e}, "
          f"conv1 gradient {np.abs(gc - gg).max() / np.abs(gc).max():.1e}")

# %% [markdown]
# The gradient checks of notebooks 1-6 run on the GPU as well, unchanged:
# `python gradcheck.py --device cuda`. Here, a few of them:

# %%
from engine.gradcheck import format_table
from layers.gradchecks import op_checks

for dev in DEVICES:
    results = [r for r in op_checks(device=dev, max_checks=20) if "conv2d" in r.op or "lrn" in r.op]
    print(f"--- {dev}\n{format_table(results)}")
    assert all(r.passed for r in results)

# %% [markdown]
# ## The time of both backends
#
# GPU calls return before the GPU has finished (the work is queued), so a fair timing
# waits for it: `synchronize()` (a no-op on NumPy). The first call on the GPU also
# compiles and caches kernels, so every measurement is taken after a warm-up call.
# We time one training step (forward, backward, SGD update) of three networks, and the
# copy of a batch of images from host to device.

# %%
from engine.optim import sgd_for     # SGD as train.py builds it (one buffer on CuPy)


def step_time(preset, batch, dev, repeat):
    """Seconds per training step (best of `repeat`, after one warm-up step)."""
    model = AlexNet(preset, init="he", seed=0).to(dev)
    c, s = model.config["in_channels"], model.config["input_size"]
    xb = to_device(rng.standard_normal((batch, c, s, s)).astype(np.float32), dev)
    yb = to_device(rng.integers(0, model.config["num_classes"], size=batch), dev)
    opt = sgd_for(model, lr=0.01)
    best = np.inf
    for i in range(repeat + 1):
        synchronize()
        t0 = time.perf_counter()
        loss, d = softmax_cross_entropy(model.forward(xb, train=True), yb, check_labels=False)
        model.backward(d)
        opt.step(model.grads)
        synchronize()
        if i > 0:                                     # the first step is the warm-up
            best = min(best, time.perf_counter() - t0)
    return best


cases = [("tiny", 128), ("mini", 32 if SMALL else 128), ("paper", 2 if SMALL else 16)]
rows = []
for preset, batch in cases:
    row = {"case": f"{preset}, batch {batch}"}
    for dev in DEVICES:
        t = step_time(preset, batch, dev, repeat=1 if SMALL else 3)
        row[dev] = t
    rows.append(row)
    print(row["case"] + ": " + ", ".join(f"{dev} {1e3 * row[dev]:.1f} ms/step "
                                         f"({batch / row[dev]:.0f} images/s)" for dev in DEVICES)
          + (f"; GPU {row['cpu'] / row['cuda']:.0f}x faster" if GPU else ""))

# %%
batch_u8 = rng.integers(0, 256, size=(128, 3, 227, 227), dtype=np.uint8)
if GPU:
    to_device(batch_u8, "cuda")
    synchronize()
    t0 = time.perf_counter()
    on_gpu = to_device(batch_u8, "cuda")
    synchronize()
    t_copy = time.perf_counter() - t0
    print(f"copying a batch of 128 uint8 images 3x227x227 ({batch_u8.nbytes / 2**20:.0f} MB) to "
          f"the GPU: {1e3 * t_copy:.1f} ms; as float32 it would be 4x more bytes, which is why "
          f"BatchLoader(device='cuda') sends uint8 and converts on the GPU")
else:
    print(f"a batch of 128 uint8 images 3x227x227 is {batch_u8.nbytes / 2**20:.0f} MB "
          f"({4 * batch_u8.nbytes / 2**20:.0f} MB as float32); BatchLoader(device='cuda') sends "
          f"the uint8 and converts on the GPU. No GPU here to time the copy.")

fig, ax = plt.subplots(figsize=(8, 3))
ypos = np.arange(len(rows))
width = 0.8 / len(DEVICES)
for k, dev in enumerate(DEVICES):
    ax.barh(ypos + k * width, [1e3 * r[dev] for r in rows], width,
            label="NumPy (CPU)" if dev == "cpu" else "CuPy (GPU)")
ax.set_yticks(ypos + width * (len(DEVICES) - 1) / 2, [r["case"] for r in rows])
if GPU:                                                # the two differ by orders of magnitude
    ax.set_xscale("log")
ax.set_xlabel("milliseconds per training step" + (" (log scale)" if GPU else ""))
ax.set_title("one training step" + ("" if GPU else " (no GPU on this machine: CPU only)"))
ax.invert_yaxis(), ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## On an NVIDIA H200: the recorded numbers
#
# The committed outputs of this notebook come from a CPU. The project's GPU
# measurements were made on an NVIDIA H200, lent twice for 15 minutes; they are
# recorded in `docs/PERFORMANCE.md` (section "On a GPU") and `docs/GPU.md`, and copied
# into `notebooks/gpu_h200.json`, which this cell reads (a test checks the copy against
# those pages). First one training step of the `mini` net, batch 128, against PyTorch
# on the same GPU, on two of the GPU routes (`few`: the ops' whole-array calls, the
# default; `loops`: the CPU's loops run on CuPy; the appendix explains both):

# %%
import json

with open(os.path.join(ROOT, "notebooks", "gpu_h200.json")) as f:
    h200 = json.load(f)
print(f"{h200['software']}; `{h200['step_command']}`\n")
print(f"{'case, route':<18} {'ours ms':>8} {'(host)':>7} {'PyTorch ms':>11} {'ratio':>6} "
      f"{'ours img/s':>11} {'PyTorch img/s':>14}")
for r in h200["step"]:
    print(f"{r['case'] + ' ' + r['route']:<18} {r['ours_ms']:>8.2f} {r['ours_host_ms']:>7.2f} "
          f"{r['torch_ms']:>11.2f} {r['ratio']:>6.2f} {r['ours_img_s']:>11,} {r['torch_img_s']:>14,}")
print(f"\ntraining ({h200['training_command']}):")
print(f"{'code':<40} {'networks at once':>16} {'s per epoch, each':>18} {'images/s, all':>14}")
for r in h200["training"]:
    print(f"{r['code']:<40} {r['networks']:>16} {r['s_per_epoch']:>18} {r['img_s']:>14,}")
acc = h200["accuracy"]
print(f"\n{acc['networks']} networks trained together for {acc['seconds_each']} s each "
      f"({acc['epochs']} epochs): {' and '.join(acc['each_tencrop_error'])} ten-crop test error, "
      f"{acc['averaged_tencrop_error']} averaged, the project's best")

fig, ax = plt.subplots(figsize=(7, 2.6))
labels = [f"{r['route']} route" for r in h200["step"]]
ypos = np.arange(len(labels))
ax.barh(ypos - 0.2, [r["ours_ms"] for r in h200["step"]], 0.4, label="this project (CuPy)")
ax.barh(ypos + 0.2, [r["torch_ms"] for r in h200["step"]], 0.4, label="PyTorch (cuDNN)")
ax.barh(ypos - 0.2, [r["ours_host_ms"] for r in h200["step"]], 0.4, fill=False, hatch="//",
        edgecolor="0.3", label="of ours: time on the host")
ax.set_yticks(ypos, labels), ax.invert_yaxis()
ax.set_xlabel("milliseconds per training step (mini, batch 128)")
ax.set_title("one training step on an NVIDIA H200 (recorded)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# On the GPU a `mini` step takes milliseconds, far less than on the CPU above; but it
# still takes more than twice PyTorch's (the ratio column), and most of it is the host's time
# (hatched): Python and CuPy launching some hundreds of small kernels, while the GPU
# waits. That is why the `few` route, fewer and larger calls, is the default on CuPy,
# and why two networks trained at once used the GPU better than one. The appendix
# shows the routes.
#
# ## What to remember
#
# - Every op takes its array module from its inputs (`get_array_module`), so NumPy and
#   CuPy run the same code; only the data pipeline, metrics and checkpoints copy
#   between host and device.
# - Move the model (`model.to('cuda')`) and each batch (`to_device`, or
#   `BatchLoader(device='cuda')`); mixing devices is an error that says so.
# - Time GPU code after a warm-up and with `synchronize()`, or you time only the
#   launch of the work.
# - On a GPU every call costs the host microseconds: a small network needs few, large
#   calls (`python -m bench.calls` counts them), where the CPU prefers loops of
#   slices.
# - Train with `python train.py --device cuda`; check with
#   `python gradcheck.py --device cuda`.

# %% [markdown]
# ## Appendix: the GPU routes and their call counts
#
# ### Few large calls: the host's side of a GPU
#
# A CuPy call does not compute on the CPU, but the CPU still runs it: Python, CuPy's
# checks of shapes and dtypes, the launch of a kernel. That costs some microseconds
# per call, however small the arrays. For the paper's big layers it hardly matters;
# the `mini` net at batch 128 gives each kernel so little work that a training step
# waits on the host. On an NVIDIA H200 (2026-11-27) one `train.py` run trained about
# 4,700 images/s; six at once on the same GPU trained 13,000 together, so one process
# had left the GPU idle most of the time.
#
# The remedy is fewer calls. Notebook 1's im2col copies one slice per kernel offset:
# 25 copies for a 5x5 kernel, 121 for the paper's 11x11, each several calls. On the
# CPU that loop is the fast way (each copy moves whole rows). On the GPU,
# `im2col_strided` asks for the same numbers in a handful of calls: one *view* of the
# padded input in which every window is already laid out as a column, made by
# choosing strides (`as_strided`: the view's axis i steps one input row, its axis oh
# steps `stride` rows), and one copy of that view. `col2im_strided` sums the windows
# back through a view of the same kind (a gather: every output pixel adds up its own
# terms, in a fixed order). The pooling's forward, ReLU's backward and the SGD update
# have such routes too. On the same H200 one run then trained 9,600 images/s, twice as
# many as before.
#
# Fewer calls are not free, though: a strided view can make the GPU's own work
# larger. Timed one layer at a time there (`python -m bench.gpu --layers`), the
# pooling's backward took 1.39 ms of GPU time as a strided sum against 0.64 ms as the
# CPU's loop over the 9 window offsets, and LRN's channel window was slower as one
# strided sum than as 4 shifted adds. With two runs sharing the GPU, the GPU's time is
# what counts, so those two keep their loops on CuPy. `PYTHONPATH=tests/fake_cupy
# python -m bench.calls` counts the calls of one `mini` training step on CuPy (through
# a NumPy stand-in, on any machine): 1,560 with the CPU's loops everywhere
# (`ALEXNET_GPU_ROUTES=loops`), 710 with the routes as they are
# (the SGD update among them, one pass over all the parameters kept in one buffer).
#
# Below, the two ways side by side on each backend: the same numbers to the last bit,
# and the time of each.

# %%
from engine.fast_im2col import col2im_loops, col2im_strided, im2col_loops, im2col_strided
from engine.im2col import conv_output_size

N, C, H, K, pad = (8, 16, 13, 5, 2) if SMALL else (128, 64, 13, 5, 2)   # mini's conv2 input
OH = conv_output_size(H, K, 1, pad)
x_host = rng.standard_normal((N, C, H, H)).astype(np.float32)
for dev in DEVICES:
    xp = np if dev == "cpu" else get_array_module(to_device(x_host[:1], dev))
    x_dev = to_device(x_host, dev)
    cols = {}
    times = {}
    for name, im2col_way in (("loops", im2col_loops), ("strided", im2col_strided)):
        out = xp.empty((C, K, K, N, OH, OH), dtype=np.float32)
        im2col_way(x_dev, out, (1, 1), (pad, pad))             # warm-up
        synchronize()
        t0 = time.perf_counter()
        for _ in range(3):
            im2col_way(x_dev, out, (1, 1), (pad, pad))
        synchronize()
        times[name] = (time.perf_counter() - t0) / 3
        cols[name] = to_numpy(out)
    dx = {name: xp.empty((N, C, H, H), dtype=np.float32) for name in times}
    col2im_loops(to_device(cols["loops"], dev), dx["loops"], (1, 1), (pad, pad))
    col2im_strided(to_device(cols["loops"], dev), dx["strided"], (1, 1), (pad, pad))
    same = (np.array_equal(cols["loops"], cols["strided"])
            and np.array_equal(to_numpy(dx["loops"]), to_numpy(dx["strided"])))
    print(f"{dev}: im2col of x {x_host.shape}, {K}x{K} kernel: loops {1e3 * times['loops']:.2f} ms, "
          f"strided {1e3 * times['strided']:.2f} ms; im2col and col2im equal to the last bit: {same}")
    assert same

# %% [markdown]
# ### One kernel instead of many passes
#
# Fewer calls still leave each call a pass over memory. LRN as array code squares the
# activation, adds shifted copies, takes a power and divides: about ten passes over
# the whole activation each way, each a kernel that reads and writes it all. The third
# GPU route, `ALEXNET_GPU_ROUTES=kernels`, writes such an op as one CUDA kernel: a
# CuPy `ElementwiseKernel`, whose body runs once per output element, with `i` that
# element's index. Here is LRN's forward, as it sits in `layers/fast/lrn.py` beside the
# NumPy code: element i of the (N, C, H, W) activation finds its channel, sums the
# squares of its window of channels, and writes the scale and the output.

# %%
from layers.fast import lrn as lrn_module

kernel = lrn_module._FWD_KERNEL
print(f"{kernel.name}({kernel.in_params}) -> ({kernel.out_params})")
print(kernel.body)

# %% [markdown]
# Every kernel of that route gathers: a thread writes only its own outputs and reads
# what it needs, so no two threads write one place, and no atomics are needed. The
# same route makes kernels of the pooling, im2col, col2im and dropout's mask: 375
# calls per `mini` step instead of 710. On a GPU, the cell below runs LRN both ways
# and compares them; without one it says so. (Without a GPU, the tests still run
# these kernels: a NumPy stand-in for CuPy compiles each body as C++ for the CPU.)

# %%
from engine.backend import set_gpu_routes
from layers.lrn import lrn_forward

xl = rng.standard_normal((4, 16, 7, 7)).astype(np.float32) * 5
if "cuda" in DEVICES:
    outs = {}
    for route in ("few", "kernels"):
        set_gpu_routes(route)
        outs[route] = to_numpy(lrn_forward(to_device(xl, "cuda"))[0])
    set_gpu_routes("few")
    gap = float(np.abs(outs["few"] - outs["kernels"]).max())
    print(f"LRN on the GPU, array code against one kernel: largest difference {gap:.1e}")
    assert gap < 1e-5
else:
    print("no GPU here: the kernels route runs on CuPy only (python scripts/check_kernels.py "
          "compiles the kernels with nvcc, without a GPU)")
