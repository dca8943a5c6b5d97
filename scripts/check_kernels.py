"""Compile every hand-written GPU kernel of the project as CuPy would, without a GPU.

    python scripts/check_kernels.py [--arch sm_90] [--nvcc nvcc] [--keep DIR]

The kernels (engine.backend.GpuKernel: LRN, the pooling, im2col, col2im, dropout) are CuPy
ElementwiseKernels. On a GPU CuPy wraps each body in its own ``__global__`` function
and compiles it with NVRTC on first use; an error there would first show on a lent
GPU. This script asks the installed CuPy for that very source, through CuPy's code
generator (``cupy._core._kernel._get_elementwise_kernel_code``, internal, so the
script says so when a CuPy version lacks it), for every type the project uses (T =
float32 and float64; S, the pooling's argmax, = int8 and int16), and compiles it with
nvcc to PTX against CuPy's headers. Neither step needs a GPU: CuPy imports without
one, and nvcc compiles for any architecture.

What it proves: the kernels are valid CUDA C++ for CuPy's wrapper, with CuPy's own
parameter parsing and types. What it does not: that they compute the right thing
(the test suite runs the same sources, compiled as C++ on the CPU, through the NumPy
stand-in for CuPy, against the NumPy code) or how fast they are (python -m bench.gpu
on a GPU). Exit status 0 when every kernel compiled, 1 when one failed, 2 when CuPy
or nvcc is missing.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PLACEHOLDERS = {"T": ("float32", "float64"), "S": ("int8", "int16")}
# The headers CuPy puts before every kernel (cupy._core.core._cupy_header_list in
# CuPy 14.2; the script asks the installed CuPy, and falls back to this list)
HEADERS = ("cupy/complex.cuh", "cupy/carray.cuh", "cupy/atomics.cuh", "cupy/math_constants.h")
# CuPy compiles every kernel with -ftz=true (cupy/cuda/compiler.py): float32 values
# below about 1.2e-38 count as 0. The stand-in's g++ build does not flush them.
NVCC_FLAGS = ("-ftz=true",)


def header() -> str:
    """The #include lines CuPy puts before a kernel's source."""
    try:
        from cupy._core import core
        names = tuple(core._cupy_header_list)
    except (ImportError, AttributeError):
        names = HEADERS
    return "".join(f"#include <{n}>\n" for n in names)


def kernel_sources(cupy, kernel):
    """(type map, CUDA source) for each type the project runs kernel with."""
    import numpy as np
    from cupy._core import _kernel as K       # CuPy's internals: the code generator

    ek = cupy.ElementwiseKernel(kernel.in_params, kernel.out_params, kernel.body,
                                kernel.name, preamble=kernel.preamble)
    params = ek.params                       # CuPy's parse, the indexer last
    names = sorted({p.ctype for p in params[:-1] if p.dtype is None})
    unknown = [n for n in names if n not in PLACEHOLDERS]
    if unknown:
        raise SystemExit(f"{kernel.name}: type placeholder(s) {unknown} not in PLACEHOLDERS")
    # CuPy indexes small arrays with 32-bit integers, big ones with 64-bit (its arrays'
    # and indexer's template arguments; i itself is a ptrdiff_t either way): both are
    # compiled
    for idx32, combo in itertools.product((False, True),
                                          itertools.product(*(PLACEHOLDERS[n] for n in names))):
        types = dict(zip(names, (np.dtype(t) for t in combo)))
        infos = []
        for p in params[:-1]:
            dtype = p.dtype if p.dtype is not None else types[p.ctype]
            if p.raw or p.dtype is None or not p.is_const:
                # an array (the project passes arrays for every raw, typed-by-placeholder
                # or output parameter): raw ones keep their 4 axes, the others are flat
                infos.append(K._ArgInfo(1, cupy.ndarray, dtype, 4 if p.raw else 1, True,
                                        idx32))
            else:
                infos.append(K._ArgInfo(3, type(dtype.type(0).item()), dtype, 0, True,
                                        idx32))
        infos.append(K._ArgInfo(2, None, None, 1, True, idx32))      # the indexer
        code = K._get_elementwise_kernel_code(tuple(infos), K._TypeMap(tuple(types.items())),
                                              params, ek.operation, ek.name, kernel.preamble)
        yield dict({n: str(d) for n, d in types.items()},
                   index="32-bit" if idx32 else "64-bit"), header() + code


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="sm_90", help="GPU architecture to compile for "
                    "(sm_90: H100 and H200)")
    ap.add_argument("--nvcc", default=shutil.which("nvcc") or "nvcc")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="write each kernel's CUDA source there")
    a = ap.parse_args(argv)
    try:
        import cupy
    except Exception as e:
        print(f"check_kernels: CuPy does not import here ({e!r}): pip install cupy-cuda13x "
              f"(no GPU needed)", file=sys.stderr)
        return 2
    if not shutil.which(a.nvcc):
        print(f"check_kernels: nvcc not found ({a.nvcc}); install the CUDA toolkit",
              file=sys.stderr)
        return 2
    try:
        from cupy._core import _kernel
        _kernel._get_elementwise_kernel_code, _kernel._ArgInfo, _kernel._TypeMap
    except (ImportError, AttributeError) as e:
        print(f"check_kernels: CuPy {cupy.__version__} lacks the code generator this "
              f"script asks for (cupy._core._kernel, CuPy's internals; written against "
              f"CuPy 14.2): {e!r}", file=sys.stderr)
        return 2
    include = os.path.join(os.path.dirname(cupy.__file__), "_core", "include")
    import engine.fast_im2col  # noqa: F401  (each module defines its kernels on import)
    import layers.fast.dropout  # noqa: F401
    import layers.fast.lrn  # noqa: F401
    import layers.fast.pool  # noqa: F401
    from engine.backend import KERNELS

    nvcc = subprocess.run([a.nvcc, "--version"], capture_output=True, text=True).stdout
    print(f"CuPy {cupy.__version__}, nvcc {nvcc.strip().splitlines()[-1]}, -arch={a.arch}")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for kernel in KERNELS:
            for types, code in kernel_sources(cupy, kernel):
                tag = kernel.name + "".join(f"-{t}" for t in types.values())
                src = os.path.join(a.keep or tmp, tag + ".cu")
                if a.keep:
                    os.makedirs(a.keep, exist_ok=True)
                with open(src, "w") as f:
                    f.write(code)
                r = subprocess.run([a.nvcc, "-ptx", f"-arch={a.arch}", "-std=c++17",
                                    *NVCC_FLAGS, "-I", include, src,
                                    "-o", os.path.join(tmp, tag + ".ptx")],
                                   capture_output=True, text=True)
                ok = r.returncode == 0
                failed += not ok
                print(f"{'OK  ' if ok else 'FAIL'} {kernel.name} {types}")
                if not ok:
                    print(r.stderr)
    print(f"{len(KERNELS)} kernels: " + ("all compiled" if not failed else f"{failed} failed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
