"""bench/calls.py on the NumPy stand-in for CuPy: the array-module calls of one training
step of the mini net, per layer. On a GPU each call costs the host microseconds, and
one mini net's step waits mostly on the host (docs/PERFORMANCE.md, "On a GPU"); the
CuPy paths of im2col, col2im, the pooling's forward, ReLU and SGD make a few calls each
where the CPU's loops make dozens. (The pooling's backward and LRN keep their loops on
CuPy too: on an H200 their few-call versions cost more GPU time than the calls they
saved.) The kernels route makes one hand-written kernel of each of those. This keeps
the calls from creeping back up."""
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_standin_gpu import standin_env


def calls_per_step(routes):
    r = subprocess.run([sys.executable, "-m", "bench.calls"], cwd=ROOT, capture_output=True,
                       env=standin_env(ALEXNET_GPU_ROUTES=routes), text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = dict(re.findall(r"^(\w+) +(\d+) +\d+ ", r.stdout, re.M))
    assert {"conv1", "lrn1", "pool1", "conv5", "fc8"} <= set(rows), r.stdout
    total = int(re.search(r"^step +\d+ +\d+ +total (\d+)", r.stdout, re.M).group(1))
    return total, {k: int(v) for k, v in rows.items() if k != "step"}, r.stdout


def test_a_mini_training_step_makes_few_array_calls_on_the_gpu_routes():
    total, forward, out = calls_per_step("few")
    # 754 on 2026-11-27 (635, then 827 when the pooling's backward and LRN went back to
    # their loops and dropout's mask to a hash, each trading calls for GPU time, then
    # 754 with the SGD step over one flat buffer)
    assert total < 900, out
    assert max(forward.values()) < 32, out       # forward calls of any one layer
    # the CPU's loops on CuPy arrays, the way back (ALEXNET_GPU_ROUTES=loops): 1,613
    loops_total, _, out = calls_per_step("loops")
    assert loops_total > 1.8 * total, out
    # the hand-written kernels (ALEXNET_GPU_ROUTES=kernels): 375 on 2026-11-27, one
    # kernel each for LRN, the pooling, im2col, col2im and dropout's mask
    kernels_total, kforward, out = calls_per_step("kernels")
    assert kernels_total < 450 and kernels_total < 0.6 * total, out
    for layer in ("lrn1", "pool1", "pool5", "drop6"):
        assert kforward[layer] <= 5, out


def test_bench_calls_says_it_needs_the_standin():
    r = subprocess.run([sys.executable, "-m", "bench.calls"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    # without the stand-in: either no CuPy at all, or a real one without CALLS; both
    # get the one line that says how to run it (no CuPy gave a traceback)
    assert r.returncode != 0
    assert r.stderr.strip() == ("bench.calls counts on the NumPy stand-in for CuPy: run it "
                                "with PYTHONPATH=tests/fake_cupy"), r.stderr[-2000:]


def _check_kernels(env=None, python=None):
    import os
    return subprocess.run([python or sys.executable,
                           os.path.join(ROOT, "scripts", "check_kernels.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)


def test_check_kernels_says_what_it_needs():
    """scripts/check_kernels.py with a CuPy that lacks the code generator it asks for
    (the NumPy stand-in plays one), or without nvcc: exit 2, saying what is missing,
    not a traceback."""
    r = _check_kernels(env=standin_env())
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "nvcc not found" in r.stderr or "lacks the code generator" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_check_kernels_compiles_every_kernel():
    """With CuPy (no GPU needed) and nvcc, every kernel compiles in every variant.
    Where either is missing this is skipped, with the script's own reason, not passed;
    ALEXNET_CHECK_KERNELS_PYTHON names a Python that has CuPy, if this one has not."""
    import os
    r = _check_kernels(python=os.environ.get("ALEXNET_CHECK_KERNELS_PYTHON"))
    if r.returncode == 2:
        assert "Traceback" not in r.stderr, r.stderr
        pytest.skip(f"check_kernels.py cannot compile here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "kernels: all compiled" in r.stdout and "FAIL" not in r.stdout
