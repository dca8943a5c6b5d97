"""bench/gpu.py end to end on the NumPy stand-in for CuPy (tests/fake_cupy), with
PyTorch on the CPU (--torch-device cpu): the check, the timed steps, the memory columns
('n/a' there) and the table all run. It says nothing about speed on a GPU."""
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_standin_gpu import standin_env


def test_bench_gpu_prints_its_table_on_the_standin():
    pytest.importorskip("torch")
    r = subprocess.run([sys.executable, "-m", "bench.gpu", "--quick", "--repeats", "1",
                        "--warmup", "1", "--torch-device", "cpu", "--layers"], env=standin_env(),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "NumPy stand-in for CuPy" in r.stdout          # the header names the 'GPU'
    assert "CUPY_TF32='0' (off)" in r.stdout
    # one row per GPU route of our ops: the few-call route, the CPU's loops, the kernels
    for route in ("loops", "kernels"):
        assert re.search(rf"^mini-b128 {route} +[\d.]+ .* OK$", r.stdout, re.M), \
            r.stdout[-2000:]
    assert "GPU routes: few OK, loops OK, kernels OK" in r.stdout
    # the fastest route: the shortest step of the three
    steps = {m[0]: float(m[1]) for m in re.findall(r"^mini-b128 (\w+) +([\d.]+) ", r.stdout,
                                                   re.M)}
    assert r.stdout.rstrip().endswith(f"fastest GPU route: {min(steps, key=steps.get)}")
    row = re.search(r"^mini-b128 few +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +\d+ +\d+ +n/a "
                    r"+n/a +OK$", r.stdout, re.M)
    assert row, r.stdout[-2000:]
    assert all(float(v) > 0 for v in row.groups())
    step, host = float(row.group(1)), float(row.group(2))
    assert host <= step                       # the host's part of the step, before the sync
    # --layers: every layer of the net and the SGD step, host and device times, and a sum
    names = re.findall(r"^(\w+(?: step)?) +[\d.]+ +[\d.]+", r.stdout, re.M)
    for name in ("conv1", "lrn1", "pool5", "fc8", "sgd step", "sum"):
        assert name in names, r.stdout[-3000:]
