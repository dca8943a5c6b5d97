"""The GPU code paths, run on the CPU through tests/fake_cupy, a NumPy stand-in for CuPy
(its docstring says what it checks and what it cannot). GPUs are lent rarely (once so
far, an H200 for 15 minutes, where these paths ran as they do here); these tests make
sure that a lease does not find an error that the CPU could have found: an op's
CuPy-only branch, a NumPy function given a device array, a host array mixed with device
arrays, a checkpoint or metric written from the device. They say nothing about CuPy's
kernels or the speed of a GPU.

The stand-in is used in subprocesses only (PYTHONPATH), so no other test sees it."""
import hashlib
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


def test_gpu_headline_script_on_the_standin_trains_like_the_cpu(tmp_path, monkeypatch):
    """scripts/gpu_headline.sh with DEVICE=cuda on the stand-in: the GPU cases run
    beside the training, two tiny nets train on the 'device', the ensemble is computed
    there. Seed 0's losses and weights match the same run on the CPU, and its
    checkpoint, written from device arrays, evaluates on the CPU to the same error."""
    out = tmp_path / "gpu"
    # lr 0.003, not the default 0.01: at 0.01 these 12 steps are unstable (loss 2.87
    # after epoch 1), and a float32 rounding difference between the routes (5e-7 in one
    # step's gradients), amplified by those steps, grew to 1e-4 in epoch 2's loss on
    # one machine and stayed under 1e-5 on another. At 0.003 the two runs' weights
    # agree to 2e-7 of each tensor's largest value.
    flags = "--init he --lr 0.003 --train-limit 384 --batch-size 64 --no-prefetch"
    env = standin_env(OUT=str(out), DEVICE="cuda", MODEL="tiny", EPOCHS="2", SEEDS="0 1",
                      DATASET="fashion-mnist-subset", TESTS="parallel", TF32="1",
                      PYTHON=sys.executable, TRAIN_FLAGS=flags, TEST_ROUTES="few kernels")
    env.pop("ALEXNET_GPU_ROUTES", None)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_headline.sh")], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    # the tests ran once per route asked for, each passing
    tests_log = (out / "gpu-tests.log").read_text()
    parts = re.split(r"^== ALEXNET_GPU_ROUTES=(\w+)$", tests_log, flags=re.M)[1:]
    assert parts[0::2] == ["few", "kernels"], tests_log[-2000:]
    for text in parts[1::2]:
        assert re.search(r"\b\d{3} passed", text) and "failed" not in text, text[-1000:]
    # the logs name the device, so that no record takes the stand-in for a GPU
    assert "gpu_headline: GPU 0: NumPy stand-in for CuPy" in r.stdout
    assert "device: cuda (GPU 0: NumPy stand-in for CuPy" in (out / "seed0.log").read_text()
    assert "the CuPy cases of the tests: exit 0" in r.stdout
    assert "ensemble of 2" in r.stdout
    ens = json.loads((out / "ensemble.json").read_text())
    assert 0 < ens["ensemble"]["tencrop_top1_error"] < 0.9
    gpu = json.loads((out / "seed0" / "metrics.json").read_text())
    assert gpu["device"] == "cuda" and gpu["cupy_tf32"] is True

    cpu_out = tmp_path / "cpu"
    assert train.main(["--dataset", "fashion-mnist-subset", "--model", "tiny", *flags.split(),
                       "--epochs", "2", "--seed", "0", "--quiet", "--out", str(cpu_out)]) == 0
    cpu = json.loads((cpu_out / "metrics.json").read_text())
    assert len(gpu["history"]) == len(cpu["history"]) == 2
    for hg, hc in zip(gpu["history"], cpu["history"]):
        np.testing.assert_allclose(hg["train_loss"], hc["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(hg["val_loss"], hc["val_loss"], rtol=1e-5)
    assert abs(gpu["test_top1_error"] - cpu["test_top1_error"]) <= 0.002
    with np.load(out / "seed0" / "best.npz") as g, np.load(cpu_out / "best.npz") as c:
        assert sorted(g.files) == sorted(c.files)
        for k in g.files:
            if k.startswith("param/"):
                assert g[k].dtype == c[k].dtype == np.float32, k
                np.testing.assert_allclose(g[k], c[k], rtol=1e-4, atol=1e-6, err_msg=k)

    # the record says where it ran and how
    import experiments.__main__ as runner
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    from experiments import headline      # a headline of the subset, for this test only
    monkeypatch.setattr(headline, "HEADLINE_DATA",
                        dict(dataset="fashion-mnist-subset", train_limit=384))
    assert runner.main(["headline", "--variant", "standin", "--change", "two nets",
                        "--ensemble", str(out / "ensemble.json"), "--run", str(out / "seed0"),
                        "--run", str(out / "seed1"), "--machine", "the stand-in"]) == 0
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "on the stand-in (cuda, TF32 matrix products)" in md

    ev = tmp_path / "eval"
    assert train.main(["--eval-only", str(out / "seed0" / "best.npz"), "--out", str(ev),
                       "--quiet"]) == 0
    assert json.loads((ev / "metrics.json").read_text())["test_top1_error"] == \
        gpu["test_top1_error"]


def test_gradcheck_command_on_the_standin_gpu():
    """`python -m engine.gradcheck --device cuda`: every op's and the whole tiny net's
    backward checked in float64 on (stand-in) device arrays."""
    r = subprocess.run([sys.executable, "-m", "engine.gradcheck", "--device", "cuda"],
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
    r = subprocess.run([sys.executable, "-m", "engine.gradcheck", "--device", "cuda",
                        "--only", "relu"], env=standin_env(ALEXNET_GPU_ROUTES="bogus"),
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stderr.strip() == ("error: --device cuda: GPU routes must be one of few, "
                                "loops, kernels, got 'bogus' (from set_gpu_routes or "
                                "ALEXNET_GPU_ROUTES)"), r.stderr


def test_gpu_lease_script_on_the_standin(tmp_path):
    """scripts/gpu_lease.sh: two groups at once (the second with random erasing), each
    run under its time limit with its fixed schedule, the ensemble of all, the ensemble
    with a network of an earlier lease (ENSEMBLE_WITH), and no more than a few files to
    carry back: no whole checkpoint, the base network's weights. Run in folders that a
    first call left behind (a warm machine keeps them): none of it may count, and with
    more than 8 files to give back the small ones go into one tar."""
    import tarfile

    import train
    earlier = tmp_path / "earlier"                      # a network of an earlier lease
    assert train.main(["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
                       "--train-limit", "384", "--batch-size", "64", "--epochs", "1",
                       "--quiet", "--no-ten-crop", "--out", str(earlier)]) == 0
    dest, work = tmp_path / "dest", tmp_path / "work"
    stale = work / "base" / "seed7"                 # a first call's network, finished
    stale.mkdir(parents=True)
    (stale / "best.npz").write_bytes((earlier / "best.npz").read_bytes())
    (stale / "metrics.json").write_text('{"test_center_top1_error": 0.5}')
    dest.mkdir()
    (dest / "weights.tar.part-zz").write_bytes(b"the first call's")
    env = standin_env(DEST=str(dest), WORK=str(work), MODEL="tiny", EPOCHS="2",
                      PART_SIZE="100K",                 # tiny's weights in several parts
                      ENSEMBLE_WITH=str(earlier / "best.npz"),
                      DATASET="fashion-mnist-subset", BASE_SEEDS="0", ERASE_SEEDS="2",
                      TESTS="skip", TRAIN_SECONDS="900", CALL_SECONDS="0",
                      PYTHON=sys.executable,
                      EXTRA_FLAGS="--train-limit 384 --batch-size 64 --no-prefetch")
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_lease.sh")], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    back = sorted(os.listdir(dest))
    parts = [f for f in back if f.startswith("weights.tar.part-")]
    assert len(parts) >= 3 and "weights.tar.part-zz" not in parts and not stale.exists()
    # 6 + the parts: more than 8, so the small files went into one tar
    assert back == ["base.tar.gz", "erase.tar.gz", "lease.log", "small-files.tar"] + parts
    assert len(back) <= 8
    with tarfile.open(dest / "small-files.tar") as tar:
        assert sorted(tar.getnames()) == ["bench-gpu.txt", "ensemble-all.json",
                                          "ensemble-with.json"]
        tar.extractall(dest)
    with_earlier = json.loads((dest / "ensemble-with.json").read_text())
    assert [n["checkpoint"] for n in with_earlier["networks"]] == [
        str(work / "base" / "seed0" / "best.npz"), str(earlier / "best.npz")]
    # the base network's weights, in parts to join: the same network as its checkpoint
    joined = tmp_path / "weights.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(dest.glob("weights.tar.part-*"))))
    with tarfile.open(joined) as tar:
        tar.extractall(tmp_path / "back")
    light = tmp_path / "back" / "weights" / "base-seed0.npz"
    sums = (tmp_path / "back" / "weights" / "SHA256SUMS").read_text()
    assert hashlib.sha256(light.read_bytes()).hexdigest() + "  ./base-seed0.npz" in sums
    with np.load(light) as w, np.load(work / "base" / "seed0" / "best.npz") as full:
        assert bool(w["weights_only"]) and not any(k.startswith("velocity/") for k in w.files)
        np.testing.assert_array_equal(w["param/conv1.w"], full["param/conv1.w"])
    log = (dest / "lease.log").read_text()
    # the benchmark ran first; here (PyTorch without CUDA, or none: exit 2) it fails,
    # and the lease goes on without it, on the few-call GPU routes
    assert "== python -m bench.gpu --quick --layers --tf32 on" in log
    assert "bench.gpu exited 2 (see bench-gpu.txt); training anyway" in log
    assert "ALEXNET_GPU_ROUTES=loops" not in log
    assert "bench.gpu" in (dest / "bench-gpu.txt").read_text()
    assert "one network (one seed asked for): no ensemble" in log
    assert "the ensemble of all 2 tested networks" in log
    ens = json.loads((dest / "ensemble-all.json").read_text())
    assert len(ens["networks"]) == 2 and ens["test_images"] == 1000
    with tarfile.open(dest / "erase.tar.gz") as tar:
        assert not any(n.endswith(".npz") for n in tar.getnames())
        m = json.load(tar.extractfile("erase/seed2/metrics.json"))
    assert m["args"]["erase"] == 0.5 and m["args"]["lr_drops"] == "0.5,0.7"
    assert m["args"]["val_fraction"] == 0 and m["best_val_top1_error"] is None
    assert [h["lr"] for h in m["history"]] == [0.02, 0.002]
    assert m["device"] == "cuda" and m["args"]["time_limit"] == 900
    assert m["gpu_routes"] == "few"


def test_gpu_lease_refuses_a_missing_ensemble_with_before_training(tmp_path):
    env = standin_env(DEST=str(tmp_path / "dest"), WORK=str(tmp_path / "work"),
                      ENSEMBLE_WITH=str(tmp_path / "gone.npz"), PYTHON=sys.executable)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_lease.sh")], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"ENSEMBLE_WITH names {tmp_path / 'gone.npz'}, which does not exist" in r.stderr
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("settings, said", [
    (dict(ERASE_SEEDS="2", VARIANT_SEEDS="3", VARIANT_FLAGS="--lr 0.04"),
     "ERASE_SEEDS and VARIANT_SEEDS, VARIANT_FLAGS or VARIANT_NAME are set"),
    (dict(ERASE_SEEDS="2", VARIANT_NAME="lr04"),
     "ERASE_SEEDS and VARIANT_SEEDS, VARIANT_FLAGS or VARIANT_NAME are set"),
    (dict(VARIANT_SEEDS="3"), "VARIANT_SEEDS names seeds but VARIANT_FLAGS is empty"),
    (dict(VARIANT_SEEDS="3", VARIANT_FLAGS="--lr 0.04", VARIANT_NAME="base"),
     "VARIANT_NAME=base: it names a folder"),
    (dict(VARIANT_SEEDS="3", VARIANT_FLAGS="--lr 0.04", VARIANT_NAME="../up"),
     "VARIANT_NAME=../up: it names a folder"),
    (dict(VARIANT_SEEDS="3", VARIANT_FLAGS="--lr 0.04", VARIANT_NAME="-x"),
     "VARIANT_NAME=-x: it names a folder"),
    # the base's --lr-drops and a cosine: train.py's own check, before the lease's minutes
    (dict(VARIANT_SEEDS="3", VARIANT_FLAGS="--cosine"),
     "error: --cosine and --lr-drops 0.5,0.7: two schedules"),
    (dict(VARIANT_SEEDS="3", VARIANT_FLAGS="--lr-drops none"),
     "error: --val-fraction 0 leaves no validation set"),
    (dict(VARIANT_SEEDS="3", VARIANT_FLAGS="--lr-decay 0.5"),
     "unrecognized arguments: --lr-decay 0.5"),
    (dict(EXTRA_FLAGS="--erase 2"), "error: --erase must be a probability in [0, 1], got 2.0"),
])
def test_gpu_lease_refuses_a_second_group_it_cannot_train(tmp_path, settings, said):
    """A second group asked for wrongly is refused before anything is cleared or
    trained: two names for it, no change from the base, a name that is base's, a path
    or an option; and flags train.py would refuse at the group's start."""
    env = standin_env(DEST=str(tmp_path / "dest"), WORK=str(tmp_path / "work"),
                      PYTHON=sys.executable, **settings)
    for k in ("ERASE_SEEDS", "VARIANT_SEEDS", "VARIANT_FLAGS", "VARIANT_NAME", "EXTRA_FLAGS",
              "BASE_FLAGS"):
        if k not in settings:
            env.pop(k, None)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_lease.sh")], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and said in r.stderr, r.stderr
    assert not (tmp_path / "work").exists()


def test_gpu_lease_trains_a_variant_group_beside_the_base(tmp_path):
    """VARIANT_SEEDS, VARIANT_FLAGS and VARIANT_NAME: a second group whose flags come
    after the base's, so that a change (here the learning rate, and a cosine instead of
    the base's drops) is compared with the base on the same lease; its archive has its
    name (a first call's archive of another name is gone), and the ensemble of all
    counts both groups' networks."""
    import tarfile
    dest, work = tmp_path / "dest", tmp_path / "work"
    dest.mkdir()
    (dest / "erase.tar.gz").write_bytes(b"a first call's second group")
    env = standin_env(DEST=str(dest), WORK=str(work), MODEL="tiny", EPOCHS="1", BENCH="0",
                      DATASET="fashion-mnist-subset", BASE_SEEDS="0", VARIANT_SEEDS="1",
                      VARIANT_NAME="lr04", VARIANT_FLAGS="--lr 0.04 --lr-drops none --cosine",
                      WEIGHTS_BACK="0",
                      TESTS="skip", CALL_SECONDS="0", PYTHON=sys.executable,
                      EXTRA_FLAGS="--train-limit 256 --batch-size 64 --no-prefetch")
    env.pop("ERASE_SEEDS", None)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_lease.sh")], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(os.listdir(dest)) == ["base.tar.gz", "ensemble-all.json", "lease.log",
                                        "lr04.tar.gz"]
    args = {}
    for name, seed in (("base", 0), ("lr04", 1)):
        with tarfile.open(dest / f"{name}.tar.gz") as tar:
            m = json.load(tar.extractfile(f"{name}/seed{seed}/metrics.json"))
        assert m["args"]["seed"] == seed and m["args"]["erase"] == 0.0
        args[name] = (m["args"]["lr"], m["args"]["lr_drops"], m["args"]["cosine"])
    assert args == {"base": (0.02, "0.5,0.7", False), "lr04": (0.04, "none", True)}
    assert ("== group lr04 (seeds 1, --lr 0.04 --lr-drops none --cosine): exit 0"
            in (dest / "lease.log").read_text())
    ens = json.loads((dest / "ensemble-all.json").read_text())
    assert [n["checkpoint"] for n in ens["networks"]] == [
        str(work / "base" / "seed0" / "best.npz"), str(work / "lr04" / "seed1" / "best.npz")]


@pytest.mark.parametrize("preset", ["", "few"])
def test_gpu_lease_trains_on_the_fastest_route_that_passed(tmp_path, preset):
    """If bench.gpu finds the few-call GPU routes and the kernels failing and the CPU's
    loops passing, the lease trains on the loops rather than losing its networks, and
    in general on the route it names fastest; unless ALEXNET_GPU_ROUTES was set. The
    training time is cut to what the call has left (CALL_SECONDS). (The benchmark is
    played by a python that answers `-m bench.gpu` so and runs the rest.)"""
    import tarfile
    dest, work = tmp_path / "dest", tmp_path / "work"
    fake = tmp_path / "python"
    fake.write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "bench.gpu" ]; then
  echo "mini-b128 few: FAILED, TypeError: played by the test"
  echo "GPU routes: few FAILED, loops OK, kernels FAILED"
  echo "fastest GPU route: loops"
  exit 1
fi
exec {sys.executable} "$@"
""")
    fake.chmod(0o755)
    env = standin_env(DEST=str(dest), WORK=str(work), MODEL="tiny", EPOCHS="1",
                      DATASET="fashion-mnist-subset", BASE_SEEDS="0", ERASE_SEEDS="",
                      TESTS="skip", PYTHON=str(fake), CALL_SECONDS="100",
                      FINISH_SECONDS="40",
                      EXTRA_FLAGS="--train-limit 256 --batch-size 64 --no-prefetch")
    env.pop("ALEXNET_GPU_ROUTES", None)
    if preset:
        env["ALEXNET_GPU_ROUTES"] = preset
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_lease.sh")], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    log = (dest / "lease.log").read_text()
    said = ("gpu_lease: GPU routes: few FAILED, loops OK, kernels FAILED; training on the "
            "fastest that passed: ALEXNET_GPU_ROUTES=loops")
    assert (said in log) == (not preset), log
    route = preset or "loops"
    with tarfile.open(dest / "base.tar.gz") as tar:
        m = json.load(tar.extractfile("base/seed0/metrics.json"))
        train_log = tar.extractfile("base/seed0.log").read().decode()
    assert m["gpu_routes"] == route
    assert f"the ops' GPU routes: {route}" in train_log
    # the training holds to what the call has left: 100 s, less the benchmark's
    # (seconds here), less the 40 s kept for after it
    cap = re.search(r"of the call's 100 s gone; training for (\d+) s instead of 480 "
                    r"\(FINISH_SECONDS=40 kept\)", log)
    assert cap and 50 <= int(cap.group(1)) <= 60, log
    assert m["args"]["time_limit"] == int(cap.group(1))
