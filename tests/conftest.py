"""Shared fixtures.

``xp`` runs a test once on NumPy and once on CuPy. The CuPy run is skipped, with the
reason, where CuPy or a GPU is missing; a skip is never counted as a pass.
"""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from engine.backend import cupy_module, gpu_status  # noqa: E402

_GPU_OK, _GPU_REASON = gpu_status()


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    if request.param == "numpy":
        return np
    if not _GPU_OK:
        pytest.skip(f"no GPU here, CuPy backend not tested: {_GPU_REASON.split(';')[0]}")
    return cupy_module()


@pytest.fixture(params=["cupy"])
def cp(request):
    """CuPy alone, for what only runs there (the GPU kernels); skipped as xp's CuPy
    case is."""
    if not _GPU_OK:
        pytest.skip(f"no GPU here, CuPy backend not tested: {_GPU_REASON.split(';')[0]}")
    return cupy_module()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_report_header(config):
    if _GPU_OK:
        return f"CuPy backend: tested ({_GPU_REASON})"
    return (f"CuPy backend: NOT tested, its cases are skipped: {_GPU_REASON}")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """The datasets with no real cache, no ALEXNET_DATA, no system folder and no
    network: only what a test writes (or the bundled subset) can be found."""
    import urllib.error

    from data import datasets as D
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ALEXNET_DATA", raising=False)
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})

    def no_network(url, timeout):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(D, "_open_url", no_network)
    return tmp_path
