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
