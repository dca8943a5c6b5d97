"""Array-module calls per training step of our AlexNet on CuPy, counted on the CPU.

    PYTHONPATH=tests/fake_cupy python -m bench.calls              # mini, batch 128
    PYTHONPATH=tests/fake_cupy python -m bench.calls --case paper-g2-b32

On a GPU every CuPy call costs the host some microseconds (Python, argument checks,
a kernel launch), whatever the size of its arrays. A small network like ``mini``
gives each kernel little work, so a training step can wait on the host rather than
on the GPU (then several runs side by side on one GPU train more images per second
together than one alone). The number of calls per step is then the figure to bring
down, and it does not need a GPU to count:
under the NumPy stand-in for CuPy (tests/fake_cupy, which counts every function,
method and index operation it is asked for), this runs one training step of our
engine and prints, per layer, the calls of its forward and backward, and of the SGD
step. It says nothing about the time each call takes (``python -m bench.gpu
--layers`` measures that, on a GPU).
"""
from __future__ import annotations

import argparse
import sys


def count(fn):
    """The stand-in's calls made by fn(): (total, Counter)."""
    import cupy
    cupy.CALLS.clear()
    fn()
    calls = +cupy.CALLS
    return sum(calls.values()), calls


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="mini-b128", help="a case of bench.cpu")
    ap.add_argument("--top", type=int, default=3, help="the most frequent calls per row")
    a = ap.parse_args(argv)
    try:
        import cupy
    except ImportError:
        cupy = None
    if not hasattr(cupy, "CALLS"):
        sys.exit("bench.calls counts on the NumPy stand-in for CuPy: run it with "
                 "PYTHONPATH=tests/fake_cupy")
    from bench.cpu import CASES, LR, MOMENTUM, WEIGHT_DECAY, build_ours
    from engine.backend import to_device
    from engine.optim import sgd_for
    from layers.loss import softmax_cross_entropy
    if a.case not in CASES:
        ap.error(f"no case {a.case!r}; the cases are {', '.join(CASES)}")
    net, x, y = build_ours(a.case)
    net.to("cuda")
    x, y = to_device(x, "cuda"), to_device(y, "cuda")
    opt = sgd_for(net, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)   # as train.py
    rows, out = [], {"h": x}

    def forward(layer):
        out["h"] = layer.forward(out["h"], train=True)

    def backward(layer, first):
        out["d"] = (layer.backward(out["d"], need_dx=False) if first
                    else layer.backward(out["d"]))

    for name, layer in net.layers:
        rows.append([name, *count(lambda: forward(layer))])
    h = out["h"]
    _, out["d"] = softmax_cross_entropy(h, y, check_labels=False)   # as train.py does
    for row, (name, layer) in zip(reversed(rows), reversed(net.layers)):
        row += count(lambda: backward(layer, layer is net.layers[0][1]))
    n_sgd, c_sgd = count(lambda: opt.step(net.grads))
    loss_n, loss_c = count(lambda: softmax_cross_entropy(h, y, check_labels=False))
    print(f"array-module calls per training step, {a.case}, on the NumPy stand-in for CuPy")
    head = f"{'layer':<10} {'forward':>8} {'backward':>9}  most frequent"
    print(head + "\n" + "-" * len(head))
    for name, nf, cf, nb, cb in rows:
        top = (cf + cb).most_common(a.top)
        print(f"{name:<10} {nf:>8} {nb:>9}  " + ", ".join(f"{k} {v}" for k, v in top))
    print(f"{'loss':<10} {loss_n:>8} {'':>9}  " + ", ".join(
        f"{k} {v}" for k, v in loss_c.most_common(a.top)))
    print(f"{'sgd step':<10} {n_sgd:>8} {'':>9}  " + ", ".join(
        f"{k} {v}" for k, v in c_sgd.most_common(a.top)))
    fwd, bwd = sum(r[1] for r in rows), sum(r[3] for r in rows)
    print(f"{'step':<10} {fwd + loss_n:>8} {bwd + n_sgd:>9}  total "
          f"{fwd + bwd + loss_n + n_sgd} (backward column: with the SGD step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
