"""The package as pip installs it, not as the checkout runs it.

A wheel is built from pyproject.toml (a copy of the files it names, in a temporary
folder, so the checkout gets no build/ folder), then read and run from where it was
unpacked, from another folder. It must carry the LICENSE, the bundled Fashion-MNIST
subset (found through importlib.resources, not next to the checkout), every module
the commands import, and the two console commands. A few seconds.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBSET = os.path.join(ROOT, "data", "fashion-mnist-subset")


def pyproject():
    tomllib = pytest.importorskip("tomllib")          # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(the wheel's path, the folder it is unpacked in)."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:   # what [build-system] asks for
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (pip install -e '.[dev]')")
    config = pyproject()
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ["pyproject.toml", "README.md", "LICENSE"] + [
            m + ".py" for m in config["tool"]["setuptools"]["py-modules"]]:
        shutil.copy(os.path.join(ROOT, name), src / name)
    for top in {p.split(".")[0] for p in config["tool"]["setuptools"]["packages"]}:
        shutil.copytree(os.path.join(ROOT, top), src / top,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp / "dist")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = (tmp / "dist").glob("*.whl")
    unpacked = tmp / "site"
    with zipfile.ZipFile(path) as z:
        z.extractall(unpacked)
    return path, unpacked


def test_the_wheel_carries_the_license_the_subset_and_the_commands(wheel):
    path, _ = wheel
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert f"{dist_info}/licenses/LICENSE" in names
        license_text = z.read(f"{dist_info}/licenses/LICENSE").decode()
        meta = z.read(f"{dist_info}/METADATA").decode()
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert license_text == open(os.path.join(ROOT, "LICENSE")).read()
    assert license_text.startswith("MIT License") and "License-Expression: MIT" in meta
    for f in os.listdir(SUBSET):
        assert f"data/fashion-mnist-subset/{f}" in names, f
    for dep in ("tqdm", "threadpoolctl"):
        assert f"Requires-Dist: {dep}" in meta, dep
    assert "alexnet-train = train:main" in entry_points
    assert "alexnet-gradcheck = gradcheck:main" in entry_points


def test_from_the_unpacked_wheel_the_commands_import_and_find_the_subset(wheel, tmp_path):
    """Run from an unrelated folder with only the unpacked wheel on the path: every
    module of ours that the commands import comes from the wheel (a package left out
    of pyproject.toml would be missing), and the subset loads from inside it."""
    _, site = wheel
    code = (
        "import os, sys, train, gradcheck, alexnet\n"
        "from data.datasets import SUBSET_DIR, load_dataset\n"
        "ds = load_dataset('fashion-mnist-subset')\n"
        "ours = sorted({m.__file__ for m in list(sys.modules.values())\n"
        "               if getattr(m, '__file__', None) and m.__name__.split('.')[0] in\n"
        "               ('alexnet', 'train', 'gradcheck', 'engine', 'layers', 'data',\n"
        "                'training')})\n"
        "print(SUBSET_DIR); print(ds.source); print(len(ds.train_x), len(ds.test_x))\n"
        "print(callable(train.main) and callable(gradcheck.main))\n"
        "print('\\n'.join(ours))\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    subset_dir, source, sizes, mains, *files = r.stdout.splitlines()
    assert subset_dir == str(site / "data" / "fashion-mnist-subset")
    assert source.startswith(subset_dir) and sizes == "5000 1000" and mains == "True"
    assert len(files) > 20
    assert all(f.startswith(str(site)) for f in files), [f for f in files
                                                         if not f.startswith(str(site))]
