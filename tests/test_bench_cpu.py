"""bench/cpu.py's check against PyTorch, which runs before anything is timed: it must
pass our network and fail a broken one (PyTorch is an optional extra: skipped without
it)."""
import numpy as np
import pytest

from alexnet import AlexNet


@pytest.mark.parametrize("broken", [None, "scaled", "nan"])
def test_the_check_against_pytorch_catches_a_wrong_or_nan_gradient(monkeypatch, broken):
    torch = pytest.importorskip("torch")
    from bench.cpu import build_torch, check_agreement
    net = AlexNet("tiny", init="he", seed=0)
    tmodel = build_torch(net, torch)
    if broken:
        # fc7's backward gives a wrong bias gradient: 3 times too big, or all NaN (the
        # max over the errors passed a NaN over, and the check said OK)
        layer = net.layer("fc7")
        real = layer.backward

        def backward(dout):
            dx = real(dout)
            layer.grads["b"][...] = (3 * layer.grads["b"] if broken == "scaled"
                                     else np.float32("nan"))
            return dx
        monkeypatch.setattr(layer, "backward", backward)
    ok, line = check_agreement(net, tmodel, torch, n=4)
    assert ok is (broken is None), line
    assert line.endswith("OK" if broken is None else "MISMATCH")
    if broken:
        assert "(fc7.b," in line


def test_blas_name_says_which_kernel_the_blas_picked():
    from bench.cpu import blas_name
    libs = [dict(internal_api="openblas", version="0.3.31", threading_layer="pthreads",
                 architecture="SkylakeX", num_threads=2),
            dict(internal_api="mkl", version="2024.0", threading_layer="intel", num_threads=4)]
    assert blas_name(libs) == ("openblas 0.3.31, pthreads, SkylakeX kernel, 2 threads; "
                               "mkl 2024.0, intel, 4 threads")
    assert blas_name([]) == "a BLAS threadpoolctl does not find"
    from threadpoolctl import threadpool_info
    for lib in threadpool_info():
        if lib["user_api"] == "blas" and lib.get("architecture"):
            assert f"{lib['architecture']} kernel" in blas_name()


@pytest.mark.parametrize("peak", [100.0, None])
def test_the_report_gives_each_conv_layers_share_of_the_fma_peak(peak):
    from bench.cpu import gflops_rows, layer_flops, peak_share, print_table
    assert peak_share(50, 100, 200) == "ours 25%, torch 50% of FMA peak 200"
    assert peak_share(50, 100, None) == "FMA peak not measured"
    net = AlexNet("tiny", init="he", seed=0)
    flops = layer_flops(net, 4)
    # every layer at 10 GFLOP/s in ours, 20 in PyTorch's (forward and backward alike)
    times = {name: {"ours": (f / 10e9, b / 10e9), "torch": (f / 20e9, b / 20e9)}
             for name, (f, b) in flops.items()}
    rows = gflops_rows("tiny-b4", net, 4, times, ceiling=50.0, peak=peak)
    assert [r[1] for r in rows] == [f"  conv{i} GFLOP/s" for i in range(1, 6)] + ["conv+fc GFLOP/s"]
    lines = print_table(rows).splitlines()[2:]
    share = "ours 10%, torch 20% of FMA peak 100" if peak else "FMA peak not measured"
    for line in lines:
        numbers, text = line.split("x  ")
        assert numbers.split()[-4:] == ["GFLOP/s", "10.0", "20.0", "0.50"], line
        assert text.endswith(share), line
    assert "ours 20%, torch 40% of matmul 50 (>= 60%: NOT met); " + share in lines[-1]
    # one layer timed: its row, and no conv+fc row (it needs them all)
    only = gflops_rows("tiny-b4", net, 4, {"conv2": times["conv2"]}, 50.0, peak, only={"conv2"})
    assert [r[1] for r in only] == ["  conv2 GFLOP/s"]
