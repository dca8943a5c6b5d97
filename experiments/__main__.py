"""Reproduce the paper's claims at small scale: ``python -m experiments NAME``.

    python -m experiments list                 # the claims, and how far each has run
    python -m experiments list --scale medium  # (at the medium scale)
    python -m experiments relu                 # one claim, 3 seeds, small scale
    python -m experiments all --seeds 3        # every claim in sequence
    python -m experiments pool --seeds 0,1,2,3,4 --scale medium-mini   # two more seeds
    python -m experiments all --scale medium   # longer runs on 12,000 real images
    python -m experiments lrn --scale full --device cuda
    python -m experiments ensemble A/best.npz B/best.npz ...  # average trained networks
    python -m experiments weights A/best.npz --out-dir W       # weights only, half the size

Each run is an ordinary ``train.py`` run; its output lands in
``experiments/results/SCALE/CLAIM/VARIANT/seedN``. A claim's summary (mean and standard
deviation over seeds, the paired difference with its 95% interval, a verdict, a plot)
goes to ``experiments/results/SCALE/CLAIM.json`` and ``.png``, and ``docs/RESULTS.md``
is regenerated from every summary present. Runs already finished are reused, so an
interrupted sweep continues where it stopped, more seeds add only their own runs, and a
run another claim already made with the same configuration (the shared baseline: ReLU,
LRN, overlapping pooling, dropout 0.5, augmentation, He init) is not trained twice.
"""
from __future__ import annotations

import argparse
import sys

from experiments import ensemble, runner
from experiments.claims import CLAIMS, SCALES
from experiments.results_md import write_results_md


def seeds_arg(text):
    """``--seeds``: a count N (seeds 0 to N - 1) or a comma-separated list of seeds."""
    try:
        if "," not in text:
            return int(text)
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count or a list of seeds: {text!r}") from None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ensemble"]:
        return ensemble.main(argv[1:])
    if argv[:1] == ["weights"]:
        return ensemble.weights_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("claim", help="a claim name, 'all', or 'list' (or 'ensemble' and "
                                 "'weights': python -m experiments ensemble --help)")
    p.add_argument("--seeds", type=seeds_arg, default=3,
                   help="seeds per variant: a count N (seeds 0 to N-1; at least 3) or a "
                        "list such as 0,1,2,3,4 (default 3)")
    p.add_argument("--scale", default="small", choices=sorted(SCALES))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--force", action="store_true", help="rerun runs that already finished")
    a = p.parse_args(argv)
    if a.claim == "list":
        runner.print_status(a.scale, a.seeds)
        return 0
    names = list(CLAIMS) if a.claim == "all" else [a.claim]
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        print(f"error: unknown claim {unknown[0]!r}; choose one of {', '.join(CLAIMS)}, all, "
              f"list", file=sys.stderr)
        return 2
    if (a.seeds < 1) if isinstance(a.seeds, int) else (not a.seeds or min(a.seeds) < 0):
        print("error: --seeds must be a count >= 1 or a list of seeds >= 0", file=sys.stderr)
        return 2
    for n in names:
        runner.run_claim(n, a.seeds, a.scale, a.device, a.force)
        write_results_md()
    return 0


if __name__ == "__main__":
    sys.exit(main())
