"""bench/calls.py on the NumPy stand-in for CuPy: the array-module calls of one training
step of the mini net, per layer. On a GPU each call costs the host microseconds, and
the mini net's step waits on the host (docs/PERFORMANCE.md, "On a GPU"); the CuPy paths
of im2col, col2im, pooling, LRN, ReLU and SGD make a few calls each where the CPU's
loops make dozens. This keeps it so."""
import re
import subprocess
import sys

from tests.conftest import ROOT
from tests.test_standin_gpu import standin_env


def test_a_mini_training_step_makes_few_array_calls_on_cupy():
    r = subprocess.run([sys.executable, "-m", "bench.calls"], env=standin_env(), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = dict(re.findall(r"^(\w+) +(\d+) +\d+ ", r.stdout, re.M))
    assert {"conv1", "lrn1", "pool1", "conv5", "fc8"} <= set(rows), r.stdout
    total = int(re.search(r"^step +\d+ +\d+ +total (\d+)", r.stdout, re.M).group(1))
    # 1,568 with the CPU's loops on CuPy arrays too (2026-11-27); 639 since
    assert total < 700, r.stdout
    per_layer = {k: int(v) for k, v in rows.items() if k != "step"}
    assert max(per_layer.values()) < 30, r.stdout       # forward calls of any one layer


def test_bench_calls_says_it_needs_the_standin():
    r = subprocess.run([sys.executable, "-m", "bench.calls"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    # without the stand-in: either no CuPy at all, or a real one without CALLS
    assert r.returncode != 0
    assert "PYTHONPATH=tests/fake_cupy" in r.stderr or "cupy" in r.stderr.lower()
