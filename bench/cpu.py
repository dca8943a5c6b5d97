"""AlexNet on the CPU: our NumPy engine against PyTorch, in the same process.

    python -m bench.cpu                          # every case (the paper net's are the slow ones)
    python -m bench.cpu --quick                  # the mini preset only
    python -m bench.cpu --case paper-g2-b32 --repeats 7
    python bench/cpu.py --list

PyTorch is needed for the comparison only (``pip install -e '.[bench]'``); the
engine never imports it.

Per case (a preset, a batch size, a groups setting):

1. Check. Build our AlexNet and the identical network in PyTorch (same layers, our
   weights copied over; PyTorch's LRN alpha is the paper's alpha times n, see
   layers/lrn.py; inverted dropout in both). With dropout off, the logits and every
   parameter's gradient of the cross-entropy loss must agree to float32 tolerance.
   The result is printed; a mismatch makes the exit status 1.
2. Training step. Forward with dropout, softmax cross-entropy, backward, SGD with
   momentum 0.9 and weight decay 5e-4, for both, interleaved (ours, torch, ours, ...)
   after warm-up; the medians are compared. Neither framework computes the gradient
   with respect to the input images (ours: ``backward(..., input_grad=False)``;
   PyTorch: the input does not require grad).
3. Layers. Each layer's forward and backward at the shapes it sees in that step,
   timed the same way. PyTorch's ReLU is in place in the training step (as in
   torchvision's AlexNet) but not in the per-layer timing, whose input is a leaf.
4. Memory, per framework in a fresh subprocess: the peak resident set size
   (VmHWM, reset through /proc/self/clear_refs) over three training steps, minus the
   resident size just before the first one, when the model, the optimizer and the
   batch exist. That counts everything the steps allocate and everything they keep
   (gradients, momentum buffers, caches, reused work buffers) and nothing the
   import of the framework costs. Our subprocess also reports tracemalloc's peak of
   NumPy allocations during one step.

GFLOP/s counts 2 flops per multiply-add of the conv and fc layers (forward, dw, and
dx except conv1's), divided by the time of those layers (the sum of their per-layer
medians). The ceiling is a float32 product of 2048 x 2048 matrices with NumPy, timed
once in every round of the layer timings, so under the same load as the layers (on a
shared machine the load changes from minute to minute). Each conv layer's GFLOP/s
(forward plus backward) is also given as a share of the machine's float32 FMA peak,
measured at the start on as many threads as our engine uses (bench/peak.py): the
most any code can do on these cores, where the matmul is what a tuned BLAS does.
The flops are those of a direct convolution for both frameworks. Our 3x3 layers take
Winograd's route (layers/fast/winograd.py), which does about three times fewer
multiplies: their GFLOP/s are effective rates, and could pass the peak.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from alexnet import AlexNet  # noqa: E402
from bench.peak import fma_peak  # noqa: E402
from engine.backend import to_device, to_numpy  # noqa: E402
from engine.optim import sgd_for  # noqa: E402
from engine.parallel import num_threads, run_parallel  # noqa: E402
from layers.loss import softmax_cross_entropy  # noqa: E402
from layers.modules import (Conv2d, Dropout, Flatten, Linear, LocalResponseNorm,  # noqa: E402
                            MaxPool2d, ReLU)
from training.environment import machine  # noqa: E402  (the report names it)

# name -> (preset, batch, groups); the paper's input is 3x227x227, mini's 1x32x32.
CASES = OrderedDict([
    ("mini-b128", ("mini", 128, None)),
    ("paper-g2-b32", ("paper", 32, 2)),
    ("paper-g1-b32", ("paper", 32, 1)),
    ("paper-g2-b128", ("paper", 128, 2)),
    ("paper-g1-b128", ("paper", 128, 1)),
])
QUICK = ["mini-b128"]

# The performance targets the report checks, as ratios ours / PyTorch (time or
# memory) or fractions.
TARGET_STEP = {"mini": 0.9, "paper": 1.1}
TARGET_LAYER = 1.3
TARGET_MEMORY = {"mini": 1.0}
TARGET_CEILING = 0.6

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
CHECK_BATCH = 8
# Relative errors (norm of the difference / norm of PyTorch's). A wrong convention
# (LRN's alpha, a flipped kernel, a missing group) gives errors near 1. float32 gives
# about 1e-6 on the logits, but up to a few 1e-3 on some gradients: conv1.w of the
# paper net sums 24,200 products per entry with heavy cancellation, and PyTorch's
# convolution algorithms (oneDNN) round differently from a plain product.
LOGIT_TOL, GRAD_TOL = 1e-4, 1e-2


def import_torch():
    try:
        import torch
    except ImportError:
        sys.exit("bench.cpu compares against PyTorch, which is not installed.\n"
                 "Install the benchmark extra: pip install -e '.[bench]' (or pip install torch).")
    return torch


# ---------------------------------------------------------------------- models

def build_ours(case, seed=0):
    preset, batch, groups = CASES[case]
    kw = dict(input_size=32) if preset == "mini" else dict(groups=groups)
    # He init: the same cost per step as the paper's N(0, 0.01), but activations keep
    # their scale through the net, so no layer ever runs on denormal floats (which are
    # much slower on the CPU and would make the timing depend on the initial weights).
    net = AlexNet(preset, init="he", seed=seed, **kw)
    c = net.config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c["in_channels"], c["input_size"], c["input_size"]),
                            dtype=np.float32)
    y = rng.integers(0, c["num_classes"], batch)
    return net, x, y


def build_torch(net, torch, inplace_relu=True):
    """The same network in PyTorch, layer for layer, with a copy of our weights."""
    nn = torch.nn
    mods = []
    for name, layer in net.layers:
        if isinstance(layer, Conv2d):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          stride=layer.stride, padding=layer.pad, groups=layer.groups)
        elif isinstance(layer, Linear):
            m = nn.Linear(layer.in_features, layer.out_features)
        elif isinstance(layer, ReLU):
            m = nn.ReLU(inplace=inplace_relu)
        elif isinstance(layer, LocalResponseNorm):
            # PyTorch divides alpha by n: its alpha = the paper's alpha * n.
            m = nn.LocalResponseNorm(layer.size, alpha=layer.alpha * layer.size,
                                     beta=layer.beta, k=layer.k)
        elif isinstance(layer, MaxPool2d):
            m = nn.MaxPool2d(layer.size, layer.stride)
        elif isinstance(layer, Dropout):
            assert layer.mode == "inverted"
            m = nn.Dropout(layer.p)              # PyTorch's dropout is inverted too
        elif isinstance(layer, Flatten):
            m = nn.Flatten()
        else:
            raise TypeError(f"bench: no PyTorch twin for {name} ({layer!r})")
        if layer.params:
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.params["w"]))
                m.bias.copy_(torch.from_numpy(layer.params["b"]))
        mods.append((name, m))
    return nn.Sequential(OrderedDict(mods))


def ours_step(net, x, y):
    """A closure running one full training step of our engine."""
    opt = sgd_for(net, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)   # as train.py

    def step():
        logits = net.forward(x, train=True)
        loss, dlogits = softmax_cross_entropy(logits, y, check_labels=False)
        net.backward(dlogits, input_grad=False)
        opt.step(net.grads)
    return step


def torch_step(tmodel, x, y, torch, device="cpu"):
    """The same for PyTorch (its SGD puts the decay in the velocity before the lr; with
    a constant lr that is the paper's update). ``device``: where the model is; the
    batch is copied there once, here."""
    opt = torch.optim.SGD(tmodel.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    tmodel.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(tmodel(xt), yt)
        loss.backward()
        opt.step()
    return step


# ---------------------------------------------------------------------- check

def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_agreement(net, tmodel, torch, n=CHECK_BATCH, seed=1, device="cpu",
                    logit_tol=LOGIT_TOL, grad_tol=GRAD_TOL):
    """Logits and gradients of ours and PyTorch's, dropout off. Returns (ok, line).
    Ours runs where ``net`` is (net.device), PyTorch's on ``device`` (bench.gpu)."""
    c = net.config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c["in_channels"], c["input_size"], c["input_size"]),
                            dtype=np.float32)
    y = rng.integers(0, c["num_classes"], n)
    drops = [l for _, l in net.layers if isinstance(l, Dropout)]
    tdrops = [m for m in tmodel if isinstance(m, torch.nn.Dropout)]
    saved = [l.p for l in drops]
    for l in drops:
        l.p = 0.0
    for m in tdrops:
        m.p = 0.0
    try:
        logits = net.forward(to_device(x, net.device), train=True)
        _, dlogits = softmax_cross_entropy(logits, to_device(y, net.device))
        net.backward(dlogits, input_grad=False)
        tmodel.zero_grad(set_to_none=True)
        tlogits = tmodel(torch.from_numpy(x).to(device))
        torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(y).to(device)).backward()
    finally:
        for l, p in zip(drops, saved):
            l.p = p
        for m, p in zip(tdrops, saved):
            m.p = p
    errs = {"logits": rel_err(to_numpy(logits), tlogits.detach().cpu().numpy())}
    tparams = dict(tmodel.named_parameters())
    for k, g in net.grads.items():
        layer, p = k.split(".")
        tg = tparams[f"{layer}.{'weight' if p == 'w' else 'bias'}"].grad
        errs[k] = rel_err(to_numpy(g), tg.cpu().numpy())
    tmodel.zero_grad(set_to_none=True)
    # a NaN compares False with everything, so max() would pass over it: rank it worst
    errs = {k: v if math.isfinite(v) else math.inf for k, v in errs.items()}
    worst = max((v, k) for k, v in errs.items() if k != "logits")
    ok = errs["logits"] < logit_tol and worst[0] < grad_tol
    line = (f"check vs PyTorch (batch {n}, dropout off): logits rel err {errs['logits']:.1e} "
            f"(tolerance {logit_tol:g}), worst of {len(errs) - 1} gradients {worst[0]:.1e} "
            f"({worst[1]}, tolerance {grad_tol:g}): {'OK' if ok else 'MISMATCH'}")
    return ok, line


# ---------------------------------------------------------------------- timing

class BackgroundLoad:
    """How many cores other processes kept busy while a block ran (Linux /proc/stat).

    On a shared machine a timing taken while other jobs run says less about the code
    than about the neighbours. Each case reports it.
    """

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.time(), self._busy(), self._own()
        return self

    def __exit__(self, *exc):
        wall = time.time() - self.t0
        ticks = os.sysconf("SC_CLK_TCK")
        others = (self._busy() - self.busy0) / ticks - (self._own() - self.own0)
        self.cores = max(0.0, others / wall) if wall > 0 else 0.0

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(a) for a in f.readline().split()[1:]]
            return v[0] + v[1] + v[2] + v[5] + v[6]      # user nice system irq softirq
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _own():
        t = os.times()
        return t[0] + t[1] + t[2] + t[3]                # this process and its children


def wait_idle(max_seconds, threshold=0.3, window=2.0):
    """Wait until other processes use less than ``threshold`` cores over a ``window``
    (or ``max_seconds`` passed). Returns the load last seen, in cores."""
    end = time.time() + max_seconds
    while True:
        with BackgroundLoad() as load:
            time.sleep(window)
        if load.cores < threshold or time.time() >= end:
            return load.cores


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def time_steps(ours, theirs, repeats, warmup=2):
    for _ in range(warmup):
        ours()
        theirs()
    ours_times, torch_times = [], []
    for _ in range(repeats):
        ours_times.append(timed(ours))
        torch_times.append(timed(theirs))
    return statistics.median(ours_times), statistics.median(torch_times)


def busy_threads(torch, seconds, _buf={}):
    """Keep every thread of a framework working for ``seconds``: torch=None runs our
    engine's threads (engine/parallel.py), else PyTorch's OpenMP threads. The work is
    a multiply on 1 MB, which stays in the cache and evicts little of the layers' data."""
    if "np" not in _buf:
        _buf["np"] = np.ones(1 << 18, dtype=np.float32)
    end = time.perf_counter() + seconds
    if torch is None:
        a = _buf["np"]
        while time.perf_counter() < end:     # no size=: split over the threads always
            run_parallel(lambda lo, hi: np.multiply(a[lo:hi], 1.0, out=a[lo:hi]), a.size)
    else:
        if "torch" not in _buf:
            _buf["torch"] = torch.ones(1 << 18)
        t = _buf["torch"]
        while time.perf_counter() < end:
            t.mul_(1.0)


def time_layers(net, x, tlayers, torch, repeats, seed=2, warm=0.03, only=None):
    """Per layer: median forward and backward time of ours and of PyTorch's twin.

    Before each timed call, ``warm`` seconds of work on all the threads of the
    framework about to be timed (busy_threads), so that each layer finds the cores as
    the layers before it would leave them in a real step: busy, with that framework's
    threads running. Two things go wrong without it:
    - PyTorch's OpenMP worker threads spin for a while after each op, waiting for the
      next; run right after a PyTorch op, ours would share the cores with them and
      read two or three times their time. During our warm-up they stop spinning and
      go to sleep.
    - A pause instead skews the other way: after some milliseconds of idle cores, the
      scheduler can wake our worker thread on the core the main thread is running on,
      and the two then share one core for the next few ms. Training steps run back to
      back, so a timing after a pause would not be one a real step sees; after the
      warm-up, each layer reads close to its time in a back-to-back run.

    Each round also times one float32 matrix product of 2048 x 2048 matrices with
    NumPy: the ceiling that the conv and fc layers are compared with, measured under
    the same load as they are (the median of the rounds is returned with the times).
    ``only``: a set of layer names to time (all when None); the others still run once,
    to make the inputs of the timed ones.
    """
    rng = np.random.default_rng(seed)
    ga = rng.standard_normal((2048, 2048), dtype=np.float32)
    gb, gc = ga.copy(), np.empty_like(ga)
    gemm = []
    inputs, douts = [], []
    h = x
    for _, layer in net.layers:          # each layer's input, from a training forward
        inputs.append(h)
        h = layer.forward(h, train=True)
        layer.cache = None
        douts.append(rng.standard_normal(h.shape, dtype=np.float32))
    res = {name: {"ours": ([], []), "torch": ([], [])} for name, _ in net.layers
           if only is None or name in only}

    def ours_once(i, layer):
        t0 = time.perf_counter()
        layer.forward(inputs[i], train=True)
        t1 = time.perf_counter()
        if i == 0:
            layer.backward(douts[i], need_dx=False)
        else:
            layer.backward(douts[i])
        return t1 - t0, time.perf_counter() - t1

    def torch_once(i, m):
        xin = torch.from_numpy(inputs[i])
        if i > 0:
            xin.requires_grad_()
        d = torch.from_numpy(douts[i])
        t0 = time.perf_counter()
        out = m(xin)
        t1 = time.perf_counter()
        out.backward(d)
        t2 = time.perf_counter()
        for p in m.parameters():
            p.grad = None
        return t1 - t0, t2 - t1

    for r in range(repeats + 1):         # the first round is the warm-up
        t = timed(lambda: np.matmul(ga, gb, out=gc))
        if r:
            gemm.append(2 * 2048 ** 3 / t / 1e9)
        for i, ((name, layer), m) in enumerate(zip(net.layers, tlayers)):
            if name not in res:
                continue
            for who, once in (("ours", lambda: ours_once(i, layer)),
                              ("torch", lambda: torch_once(i, m))):
                busy_threads(None if who == "ours" else torch, warm)
                f, b = once()
                if r:
                    res[name][who][0].append(f)
                    res[name][who][1].append(b)
    times = {name: {who: (statistics.median(v[0]), statistics.median(v[1]))
                    for who, v in d.items()} for name, d in res.items()}
    return times, statistics.median(gemm)


def layer_flops(net, batch):
    """2 * multiply-adds of each conv/fc layer in a training step (fwd, bwd)."""
    flops = {}
    shape = (net.config["in_channels"], net.config["input_size"], net.config["input_size"])
    for i, (name, layer) in enumerate(net.layers):
        out = layer.output_shape(shape)
        if isinstance(layer, Conv2d):
            kh, kw = layer.kernel_size
            macs = batch * out[1] * out[2] * out[0] * (shape[0] // layer.groups) * kh * kw
            flops[name] = (2 * macs, 2 * macs * (1 if i == 0 else 2))   # conv1: no dx
        elif isinstance(layer, Linear):
            macs = batch * layer.in_features * layer.out_features
            flops[name] = (2 * macs, 4 * macs)
        shape = out
    return flops


def matmul_ceiling(torch, n=3072, repeats=5):
    """Median GFLOP/s of an n x n float32 matrix product, NumPy and PyTorch."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    torch_a, torch_b, torch_out = torch.from_numpy(a), torch.from_numpy(b), torch.empty(n, n)
    np.matmul(a, b, out=out)
    torch.mm(torch_a, torch_b, out=torch_out)
    numpy_times, torch_times = [], []
    for _ in range(repeats):
        numpy_times.append(timed(lambda: np.matmul(a, b, out=out)))
        torch_times.append(timed(lambda: torch.mm(torch_a, torch_b, out=torch_out)))
    gflop = 2 * n ** 3 / 1e9
    return gflop / statistics.median(numpy_times), gflop / statistics.median(torch_times)


# ---------------------------------------------------------------------- memory

def _status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _release_free_memory():
    gc.collect()
    try:                      # glibc keeps freed heap memory; give it back first
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def memory_child(case, who):
    """Run in a fresh process: peak RSS of training steps above the resident baseline."""
    net, x, y = build_ours(case)
    if who == "torch":
        torch = import_torch()
        step = torch_step(build_torch(net, torch), x, y, torch)
        del net                   # the PyTorch model holds its own copy of the weights
    else:
        step = ours_step(net, x, y)
    _release_free_memory()
    base = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")              # resets VmHWM to the current RSS
    for _ in range(3):
        step()
    result = {"base_kb": base, "peak_kb": _status_kb("VmHWM")}
    if who == "ours":
        import tracemalloc
        tracemalloc.start()
        step()
        result["traced_peak_kb"] = tracemalloc.get_traced_memory()[1] // 1024
        tracemalloc.stop()
    print(json.dumps(result))


def measure_memory(case):
    res = {}
    for who in ("ours", "torch"):
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", who,
                            "--case", case], capture_output=True, text=True, cwd=ROOT)
        if p.returncode:
            raise RuntimeError(f"memory subprocess ({who}, {case}) failed:\n{p.stderr}")
        res[who] = json.loads(p.stdout.strip().splitlines()[-1])
    return res


# ---------------------------------------------------------------------- report

def blas_name(libs=None):
    """The BLAS NumPy runs on, as threadpoolctl finds it: library, version, threading
    layer, the kernel it picked for this CPU (OpenBLAS and BLIS say) and its own thread
    count, e.g. 'openblas 0.3.31.188.0, pthreads, SkylakeX kernel, 2 threads'.
    ``libs``: threadpoolctl's info dicts of the BLAS libraries (default: those loaded,
    the ones engine/parallel.py's blas_info describes)."""
    if libs is None:
        from threadpoolctl import ThreadpoolController
        libs = ThreadpoolController().select(user_api="blas").info()
    names = []
    for b in libs:
        kernel = b.get("architecture")
        names.append(", ".join(filter(None, [
            f"{b['internal_api']} {b.get('version') or ''}".strip(), b.get("threading_layer"),
            kernel and f"{kernel} kernel", f"{b['num_threads']} threads"])))
    return "; ".join(names) or "a BLAS threadpoolctl does not find"


def fmt_ms(t):
    return "" if t is None else f"{t * 1e3:.1f}"


def verdict(ratio, target):
    if target is None:
        return ""
    return f"<= {target:g}  {'met' if ratio <= target else 'NOT met'}"


def gflops_rows(case, net, batch, layer_times, ceiling, peak, only=None):
    """The table's GFLOP/s rows: one per conv layer timed, whose last field asks
    print_table for its share of the FMA ``peak`` (GFLOP/s, or None: not measured), and
    the conv and fc layers together, with their share of the matmul ``ceiling`` too
    (only when every layer was timed)."""
    flops = layer_flops(net, batch)
    rows, work = [], {"ours": [0.0, 0], "torch": [0.0, 0]}
    for name, layer in net.layers:
        if name not in flops or name not in layer_times:
            continue
        gflops = {}
        for who in ("ours", "torch"):
            seconds = sum(layer_times[name][who])          # forward + backward
            work[who][0] += seconds
            work[who][1] += sum(flops[name])
            gflops[who] = sum(flops[name]) / seconds / 1e9
        if isinstance(layer, Conv2d):
            rows.append((case, f"  {name} GFLOP/s", None, None, gflops["ours"], None, None,
                         gflops["torch"], ("peak", peak)))
    if only is None:              # the share of the ceiling needs every conv and fc layer
        rows.append((case, "conv+fc GFLOP/s", None, None,
                     work["ours"][1] / work["ours"][0] / 1e9, None, None,
                     work["torch"][1] / work["torch"][0] / 1e9, ("gflops", ceiling, peak)))
    return rows


def run_case(case, torch, repeats, layer_repeats, do_layers, do_memory, rows, notes,
             idle_wait=0, do_step=True, only=None, warm=0.03, peak=None):
    preset, batch, _ = CASES[case]
    net, x, y = build_ours(case)
    names = [name for name, _ in net.layers]
    if only and not only <= set(names):
        raise SystemExit(f"bench.cpu: no layer {sorted(only - set(names))[0]!r} in {case}; "
                         f"the layers are {', '.join(names)}")
    tmodel = build_torch(net, torch)
    ok, line = check_agreement(net, tmodel, torch)
    print(f"[{case}] {line}", flush=True)
    notes.append(f"{case}: {line}")
    if do_step:
        ours, theirs = ours_step(net, x, y), torch_step(tmodel, x, y, torch)
        if idle_wait:
            wait_idle(idle_wait)
        with BackgroundLoad() as load:
            ours_s, torch_s = time_steps(ours, theirs, repeats)
        print(f"[{case}] training step: ours {ours_s * 1e3:.0f} ms, torch "
              f"{torch_s * 1e3:.0f} ms, ratio {ours_s / torch_s:.2f} (other processes kept "
              f"{load.cores:.1f} cores busy)", flush=True)
        notes.append(f"{case}: other processes kept {load.cores:.1f} of {os.cpu_count()} "
                     f"cores busy during the training steps")
        rows.append((case, "training step", None, None, ours_s, None, None, torch_s,
                     verdict(ours_s / torch_s, TARGET_STEP[preset])))
        del ours, theirs
        gc.collect()
    if do_layers:
        torch_layers = list(build_torch(net, torch, inplace_relu=False))
        if idle_wait:
            wait_idle(idle_wait)
        with BackgroundLoad() as load:
            layer_times, ceiling = time_layers(net, x, torch_layers, torch, layer_repeats,
                                               only=only, warm=warm)
        notes.append(f"{case}: other processes kept {load.cores:.1f} cores busy during the "
                     f"layer timings")
        for name, _ in net.layers:
            if name == "flatten" or name not in layer_times:
                continue          # flatten: a reshape in both, nothing to time
            ours_fwd, ours_bwd = layer_times[name]["ours"]
            torch_fwd, torch_bwd = layer_times[name]["torch"]
            ours_s, torch_s = ours_fwd + ours_bwd, torch_fwd + torch_bwd
            rows.append((case, f"  {name}", ours_fwd, ours_bwd, ours_s, torch_fwd, torch_bwd,
                         torch_s, verdict(ours_s / torch_s, TARGET_LAYER)))
        rows += gflops_rows(case, net, batch, layer_times, ceiling, peak, only)
    if do_memory:
        mem = measure_memory(case)
        ours_mib = (mem["ours"]["peak_kb"] - mem["ours"]["base_kb"]) / 1024
        torch_mib = (mem["torch"]["peak_kb"] - mem["torch"]["base_kb"]) / 1024
        rows.append((case, "step peak MiB", None, None, ours_mib, None, None, torch_mib,
                     verdict(ours_mib / torch_mib, TARGET_MEMORY.get(preset))))
        notes.append(f"{case}: memory baseline RSS ours {mem['ours']['base_kb'] / 1024:.0f} MiB, "
                     f"torch {mem['torch']['base_kb'] / 1024:.0f} MiB; tracemalloc peak of "
                     f"NumPy allocations in one of our steps "
                     f"{mem['ours']['traced_peak_kb'] / 1024:.0f} MiB")
    return ok


def peak_share(ours_gflops, torch_gflops, peak):
    """'ours 41%, torch 55% of FMA peak 230': GFLOP/s as shares of the FMA peak."""
    if peak is None:
        return "FMA peak not measured"
    return f"ours {ours_gflops / peak:.0%}, torch {torch_gflops / peak:.0%} of FMA peak {peak:.0f}"


def print_table(rows):
    head = (f"{'case':<14} {'what':<18} {'ours fwd':>9} {'ours bwd':>9} {'ours':>9} "
            f"{'torch fwd':>9} {'torch bwd':>9} {'torch':>9} {'ours/torch':>10}  target")
    lines = [head, "-" * len(head)]
    prev = None
    for (case, what, ours_fwd, ours_bwd, ours_value, torch_fwd, torch_bwd, torch_value,
         target) in rows:
        label = case if case != prev else ""
        prev = case
        if isinstance(target, tuple):        # GFLOP/s: ("peak", peak) or ("gflops", ceiling, peak)
            share = peak_share(ours_value, torch_value, target[-1])
            if target[0] == "gflops":
                ceiling = target[1]
                ours_share, torch_share = ours_value / ceiling, torch_value / ceiling
                share = (f"ours {ours_share:.0%}, torch {torch_share:.0%} of matmul {ceiling:.0f} "
                         f"(>= {TARGET_CEILING:.0%}: "
                         f"{'met' if ours_share >= TARGET_CEILING else 'NOT met'}); {share}")
            lines.append(f"{label:<14} {what:<18} {'':>9} {'':>9} {ours_value:>9.1f} {'':>9} "
                         f"{'':>9} {torch_value:>9.1f} {ours_value / torch_value:>9.2f}x  {share}")
        elif what.startswith("step peak"):
            lines.append(f"{label:<14} {what:<18} {'':>9} {'':>9} {ours_value:>9.0f} {'':>9} "
                         f"{'':>9} {torch_value:>9.0f} {ours_value / torch_value:>9.2f}x  "
                         f"{target}")
        else:
            lines.append(f"{label:<14} {what:<18} {fmt_ms(ours_fwd):>9} {fmt_ms(ours_bwd):>9} "
                         f"{fmt_ms(ours_value):>9} {fmt_ms(torch_fwd):>9} {fmt_ms(torch_bwd):>9} "
                         f"{fmt_ms(torch_value):>9} {ours_value / torch_value:>9.2f}x  {target}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", choices=list(CASES),
                    help="a case to run (repeatable); default: all")
    ap.add_argument("--quick", action="store_true", help="only " + ", ".join(QUICK))
    ap.add_argument("--repeats", type=int, default=5, help="timed training steps per framework")
    ap.add_argument("--layer-repeats", type=int, default=None,
                    help="timed runs per layer (default: --repeats)")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer timings")
    ap.add_argument("--layer", action="append", metavar="NAME",
                    help="time only this layer (repeatable), e.g. --layer pool5: many "
                         "--layer-repeats for one noisy row in little time")
    ap.add_argument("--warm", type=float, default=0.03, metavar="SECONDS",
                    help="work on the timed framework's threads before each layer timing "
                         "(default 0.03; see time_layers): 0.3 also lets the traces of the "
                         "other framework's previous call fade (conv1 at batch 32)")
    ap.add_argument("--no-step", action="store_true", help="skip the whole training step")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="on a shared machine: before each timing block, wait up to this "
                         "long for other processes to leave the cores idle")
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--memory-child", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warm < 0:
        ap.error(f"--warm must be >= 0 seconds, got {args.warm}")
    if args.list:
        for name, (preset, batch, groups) in CASES.items():
            print(f"{name:<16} preset {preset}, batch {batch}"
                  + (f", groups {groups}" if groups else ""))
        return 0
    if args.memory_child:
        memory_child(args.case[0], args.memory_child)
        return 0
    torch = import_torch()
    cases = QUICK if args.quick else (args.case or list(CASES))
    layer_repeats = args.layer_repeats or args.repeats

    with BackgroundLoad() as peak_load:
        peak = fma_peak(num_threads())
    numpy_gflops, torch_gflops = matmul_ceiling(torch)
    header = [
        f"AlexNet training on the CPU: ours (NumPy {np.__version__}, {num_threads()} threads) vs "
        f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)",
        f"our BLAS: {blas_name()} (one thread per call inside our threads)",
        f"machine: {machine()}; {datetime.date.today().isoformat()}",
        f"float32 matmul (3072^3, median of 5) at the start: NumPy {numpy_gflops:.0f} GFLOP/s, "
        f"PyTorch {torch_gflops:.0f} GFLOP/s; the GFLOP/s rows compare with a 2048^3 product "
        f"timed in every round of the layer timings (its median is printed there)",
        f"{peak.describe()}, at the start (bench/peak.py; other processes kept "
        f"{peak_load.cores:.1f} cores busy meanwhile); the GFLOP/s rows give their share of it",
        "times in ms, medians of "
        + (f"{args.repeats} interleaved steps ({layer_repeats} per layer)" if not args.no_step
           else f"{layer_repeats} interleaved runs per layer")
        + " after warm-up; ratio < 1 means ours is faster",
    ]
    if args.warm != 0.03:
        header.append(f"each layer timing after {args.warm:g} s of work on the timed "
                      f"framework's threads (default 0.03)")
    print("\n".join(header), flush=True)
    rows, notes, all_ok = [], [], True
    for case in cases:
        all_ok &= run_case(case, torch, args.repeats, layer_repeats, not args.no_layers,
                           not args.no_memory, rows, notes, idle_wait=args.wait_idle,
                           do_step=not args.no_step, only=set(args.layer) if args.layer else None,
                           warm=args.warm, peak=peak.gflops)
        gc.collect()
    report = "\n".join(header + ["", print_table(rows), ""] + notes)
    print("\n" + report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return exit_status(all_ok)


def exit_status(all_ok: bool) -> int:
    """0, or 1 with a warning when ours and PyTorch disagreed (bench.gpu ends so too)."""
    if not all_ok:
        print("\nours and PyTorch DISAGREE: the timings above compare different computations",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
