"""engine/backend.py: the GPU is probed once per process, not once per batch."""
import numpy as np
import pytest

from engine import backend


class _FakeCupy:
    """Just what to_device needs: asarray."""
    @staticmethod
    def asarray(x):
        return ("on the fake device", x)


def _probe_answering(monkeypatch, answer):
    """Make gpu_status() give ``answer``, with nothing confirmed yet; returns the list
    that gets one entry per probe."""
    probes = []

    def status():
        probes.append(1)
        return answer

    monkeypatch.setattr(backend, "gpu_status", status)
    monkeypatch.setattr(backend, "_GPU_CONFIRMED", [])
    return probes


def test_require_gpu_probes_the_gpu_once_then_trusts_it(monkeypatch):
    # gpu_status() runs a kernel and waits for it: asked for every batch, it would make
    # every batch wait for all the GPU work queued before it
    monkeypatch.setattr(backend, "_cupy", _FakeCupy)
    probes = _probe_answering(monkeypatch, (True, "GPU 0: fake"))
    for _ in range(3):
        assert backend.to_device(np.zeros(2), "cuda")[0] == "on the fake device"
    assert len(probes) == 1


def test_require_gpu_keeps_asking_while_the_gpu_is_not_usable(monkeypatch):
    probes = _probe_answering(monkeypatch, (False, "no CUDA device"))
    for _ in range(2):
        with pytest.raises(backend.GPUUnavailableError, match="not usable: no CUDA device"):
            backend.to_device(np.zeros(2), "cuda")
    assert len(probes) == 2 and backend._GPU_CONFIRMED == []
