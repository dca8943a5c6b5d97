"""The GPU code paths, run on the CPU through tests/fake_cupy, a NumPy stand-in for CuPy
(its docstring says what it checks and what it cannot). GPUs are lent rarely (once so
far, an H200 for 15 minutes, where these paths ran as they do here); these tests make
sure that a lease does not find an error that the CPU could have found: an op's
CuPy-only branch, a NumPy function given a device array, a host array mixed with device
arrays, a checkpoint or metric written from the device. They say nothing about CuPy's
kernels or the speed of a GPU.

The stand-in is used in subprocesses only (PYTHONPATH), so no other test sees it."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import train
from tests.conftest import ROOT

STANDIN = os.path.join(ROOT, "tests", "fake_cupy")


def standin_env(**extra):
    path = os.pathsep.join([STANDIN, ROOT] + [p for p in os.environ.get("PYTHONPATH", "")
                                              .split(os.pathsep) if p])
    return dict(os.environ, PYTHONPATH=path, **extra)


@pytest.mark.parametrize("routes", ["few", "loops", "kernels"])
def test_the_suites_gpu_cases_pass_on_the_numpy_standin(routes):
    """Every test case parametrized over NumPy and CuPy runs its CuPy case on the
    stand-in: each op's CuPy branch against the NumPy reference, the gradient checks.
    None may be skipped there (a skip would mean the stand-in was not picked up). Both
    GPU routes of the ops (engine/backend.py): the few-call one that training takes,
    and the CPU's loops, the way back if a few-call route fails on a GPU."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-k", "cupy", os.path.join(ROOT, "tests")],
                       env=standin_env(ALEXNET_GPU_ROUTES=routes),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|skipped|failed)",
                                                      r.stdout))
    assert counts.get("passed", 0) >= 100 and "skipped" not in counts, r.stdout[-500:]


def test_training_on_the_standin_gpu_matches_the_cpu(tmp_path):
    """train.py --device cuda on the stand-in: the batches, the ops, the update and the
    checkpoints all go through the CuPy code paths. The losses and weights match the same
    run on the CPU, and its checkpoint, written from device arrays, evaluates on the CPU
    to the same error."""
    # lr 0.003, not the default 0.01: at 0.01 these 12 steps are unstable, and a float32
    # rounding difference between the routes, amplified by them, can exceed the tolerance.
    flags = ["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
             "--lr", "0.003", "--train-limit", "384", "--batch-size", "64", "--no-prefetch",
             "--epochs", "2", "--seed", "0", "--quiet"]
    out = tmp_path / "gpu"
    env = standin_env(CUPY_TF32="1")
    env.pop("ALEXNET_GPU_ROUTES", None)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *flags, "--device",
                        "cuda", "--out", str(out)], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    # the log names the device, so that no record takes the stand-in for a GPU
    assert "device: cuda (GPU 0: NumPy stand-in for CuPy" in r.stdout
    gpu = json.loads((out / "metrics.json").read_text())
    assert gpu["device"] == "cuda" and gpu["cupy_tf32"] is True

    cpu_out = tmp_path / "cpu"
    assert train.main(flags + ["--out", str(cpu_out)]) == 0
    cpu = json.loads((cpu_out / "metrics.json").read_text())
    assert len(gpu["history"]) == len(cpu["history"]) == 2
    for hg, hc in zip(gpu["history"], cpu["history"]):
        np.testing.assert_allclose(hg["train_loss"], hc["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(hg["val_loss"], hc["val_loss"], rtol=1e-5)
    assert abs(gpu["test_top1_error"] - cpu["test_top1_error"]) <= 0.002
    with np.load(out / "best.npz") as g, np.load(cpu_out / "best.npz") as c:
        assert sorted(g.files) == sorted(c.files)
        for k in g.files:
            if k.startswith("param/"):
                assert g[k].dtype == c[k].dtype == np.float32, k
                np.testing.assert_allclose(g[k], c[k], rtol=1e-4, atol=1e-6, err_msg=k)

    ev = tmp_path / "eval"
    assert train.main(["--eval-only", str(out / "best.npz"), "--out", str(ev),
                       "--quiet"]) == 0
    assert json.loads((ev / "metrics.json").read_text())["test_top1_error"] == \
        gpu["test_top1_error"]


def test_gradcheck_command_on_the_standin_gpu():
    """`python gradcheck.py --device cuda`: every op's and the whole tiny net's
    backward checked in float64 on (stand-in) device arrays."""
    r = subprocess.run([sys.executable, "gradcheck.py", "--device", "cuda"],
                       env=standin_env(), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert r.stdout.startswith("device: cuda (GPU 0: NumPy stand-in for CuPy")
    assert "the ops' GPU routes: few)" in r.stdout.splitlines()[0]
    assert "AlexNet tiny (whole network)" in r.stdout and "FAIL" not in r.stdout
    assert re.search(r"\b[1-9]\d* passed, 0 failed", r.stdout), r.stdout[-300:]


_KERNEL_RULES = """
import numpy as np, cupy
x = cupy.asarray(np.arange(6, dtype=np.float32))
rev = cupy.ElementwiseKernel("raw T x", "T y", "y = x[5 - i]", "rev")
print("read", cupy.asnumpy(rev(x, cupy.empty(6, dtype=np.float32))).tolist())
write = cupy.ElementwiseKernel("raw T x", "T y", "x[i] = 0; y = 1", "write")
try:
    write(x, cupy.empty(6, dtype=np.float32))
    print("wrote into a raw input")
except RuntimeError as e:
    print("refused a write into a raw input:", "read-only" in str(e))
dbl = cupy.ElementwiseKernel("float x", "float y", "y = x * 2", "dbl")
print("float is", dbl(cupy.ones(3), cupy.empty(3)).dtype)
try:
    cupy.ElementwiseKernel("TT x", "T y", "y = x", "k")
except TypeError as e:
    print("TT:", e)
"""


def test_standin_kernels_read_types_and_raw_inputs_as_on_a_gpu():
    """The stand-in's ElementwiseKernel reads types and raw inputs as CuPy 14 does, so
    a kernel that it runs also compiles under CuPy: a raw input is const (CuPy passes
    a const CArray, so a write into it does not compile), 'float' is NumPy's float64
    and only a one-letter name is a type placeholder."""
    r = subprocess.run([sys.executable, "-c", _KERNEL_RULES], env=standin_env(), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.splitlines() == [
        "read [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]",
        "refused a write into a raw input: True",
        "float is float64",
        "TT: data type 'TT' not understood"], r.stdout


def test_gradcheck_names_an_unknown_gpu_route_in_one_line():
    r = subprocess.run([sys.executable, "gradcheck.py", "--device", "cuda",
                        "--only", "relu"], env=standin_env(ALEXNET_GPU_ROUTES="bogus"),
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stderr.strip() == ("error: --device cuda: GPU routes must be one of few, "
                                "loops, kernels, got 'bogus' (from set_gpu_routes or "
                                "ALEXNET_GPU_ROUTES)"), r.stderr


