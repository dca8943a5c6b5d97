"""Gradient checks of the whole project: every op, then the whole tiny network.

    python gradcheck.py                    # on the CPU (NumPy)
    python gradcheck.py --device cuda      # on the GPU (CuPy)
    python gradcheck.py --only lrn         # only the checks whose op name says 'lrn'

Each op's hand-written backward, and the network's backward through all its layers,
is compared with centered differences in float64 (engine/gradcheck.py says how), and
a table is printed. Exit status: 0 when every check passes, 1 when one fails, 2 for a
usage error (no GPU, an --only that matches nothing).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from engine.backend import to_device
from engine.gradcheck import GradCheckResult, format_table, numerical_gradient, rel_error
from layers.gradchecks import op_checks


def model_check(model, x, y, max_checks=20, seed=0, tol=1e-5, h=1e-6):
    """Whole-network gradient check: dLoss/dparam of every parameter of ``model``
    (float64) against centered differences, with dropout masks held fixed.

    A whole network has thousands of ReLUs and pooling windows, and a step of h can
    push one of them across its kink; h = 1e-6 makes that ten times less likely than
    1e-5 while float64 round-off stays far below the tolerance. Keep the logits
    of order 1 (small inputs): a saturated softmax has gradients near 1e-8 whose
    relative error is all round-off.

    Round-off in a centered difference of a loss L is about eps * |L| / h, some 3e-10
    here, so a correct entry smaller than about 3e-5 could not be judged to 1e-5
    relative: entries with |a| + |n| below 1e-4 are judged by their difference over
    1e-4 instead (``rel_error``'s floor). A 1% error in a gradient still fails by far."""
    from layers.loss import softmax_cross_entropy

    rng = np.random.default_rng(seed)
    frozen = model.extra_state()          # dropout call counters: same masks every forward

    def loss():
        model.load_extra_state(frozen)
        logits = model.forward(x, train=True)
        return float(softmax_cross_entropy(logits, y)[0])

    model.load_extra_state(frozen)
    logits = model.forward(x, train=True)
    _, dlogits = softmax_cross_entropy(logits, y)
    model.backward(dlogits)
    grads = {k: v.copy() for k, v in model.grads.items()}
    results = []
    for name, p in model.params.items():
        n = int(p.size)
        idx = np.arange(n) if n <= max_checks else np.sort(rng.choice(n, max_checks, replace=False))
        num = numerical_gradient(loss, p, idx, h)
        ana = np.asarray(grads[name].reshape(-1)[idx].tolist())
        results.append(GradCheckResult("AlexNet tiny (whole network)", name,
                                       rel_error(ana, num, floor=1e-4), len(idx), n, tol))
    return results


def tiny_model_check(device="cpu", seed=0, max_checks=10):
    """The whole tiny AlexNet, float64, on a batch of 2 random 1x28x28 images."""
    from alexnet import AlexNet

    model = AlexNet("tiny", init="he", seed=seed, dtype=np.float64)
    model.to(device)
    rng = np.random.default_rng(seed + 1)
    x = to_device(0.3 * rng.standard_normal((2, 1, 28, 28)), device)
    y = to_device(np.array([3, 7]), device)
    return model_check(model, x, y, max_checks=max_checks, seed=seed)


def run_all(device="cpu", seed=0, max_checks=200, only=None) -> list[GradCheckResult]:
    """Every op's checks, then the whole tiny network's; ``only``: the checks whose op
    name contains this text."""
    results = op_checks(device, seed, max_checks)
    # the whole network has 30 parameter arrays and one forward per entry: 10 each at most
    results += tiny_model_check(device, seed, max_checks=min(10, max_checks))
    if only:
        results = [r for r in results if only.lower() in r.op.lower()]
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python gradcheck.py",
        description="Check every op's hand-written backward against centered differences "
                    "(float64) and print a table. Exits non-zero if any check fails.")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="run the checks on NumPy (cpu) or CuPy (cuda)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs")
    p.add_argument("--max-checks", type=int, default=200,
                   help="entries checked per gradient (a random sample for big arrays; "
                        "the whole-network check takes at most 10 per parameter)")
    p.add_argument("--only", default=None,
                   help="run only checks whose op name contains this text")
    args = p.parse_args(argv)
    if args.max_checks < 1:
        p.error(f"--max-checks must be >= 1, got {args.max_checks}")
    if args.device == "cuda":
        from engine.backend import GPUUnavailableError, gpu_routes, gpu_status, require_gpu
        try:
            require_gpu()
            gpu_routes()              # an unknown ALEXNET_GPU_ROUTES: one line, below
        except (GPUUnavailableError, ValueError) as e:
            print(f"error: --device cuda: {e}", file=sys.stderr)
            return 2
        print(f"device: cuda ({gpu_status()[1]}; the ops' GPU routes: {gpu_routes()})\n")
    every = run_all(device=args.device, seed=args.seed, max_checks=args.max_checks)
    results = [r for r in every if not args.only or args.only.lower() in r.op.lower()]
    if not results:
        # a typo in --only must not read as "0 failed"
        ops = ", ".join(dict.fromkeys(r.op for r in every))
        print(f"error: --only {args.only!r} matches no check; the checks are: {ops}",
              file=sys.stderr)
        return 2
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
