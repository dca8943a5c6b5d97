"""``cupy.ElementwiseKernel`` for the stand-in: the kernel's CUDA C++ compiled as C++
for the CPU (g++), one loop over the elements where a GPU runs one thread each.

The project's hand-written kernels (engine.backend.GpuKernel) are CUDA C++ bodies that
CuPy wraps in a ``__global__`` function. Here the same body is wrapped in a C++ loop
and compiled with the machine's C++ compiler, so the suite's CuPy cases run the very
text of each kernel, its index arithmetic, bounds and sums, against the NumPy code on
the CPU. CuPy's parameter rules are followed where they matter to a kernel written for
it: ``raw`` arrays are read at any flat C-order index, other arrays are element ``i``
(inputs, raw or not, are const), scalars are values, a one-letter type (``T``) is a
placeholder that takes the dtype of the arrays given for it, any other type is a
dtype's name as NumPy reads it, and ``i`` or a name starting with ``_`` is refused.

What this cannot check: that nvcc accepts the body (scripts/check_kernels.py does, with
CuPy's own code generation, where CUDA and CuPy are installed), anything about threads
running at once (each thread must write only its own outputs, as the kernels do), and
speed. Compiled libraries are cached under the temporary directory, keyed by the
source's SHA-256.
"""
import ctypes
import hashlib
import os
import re
import subprocess
import tempfile

import numpy as np

_CTYPES = {
    np.dtype(np.float32): "float", np.dtype(np.float64): "double",
    np.dtype(np.int8): "signed char", np.dtype(np.int16): "short",
    np.dtype(np.int32): "int", np.dtype(np.int64): "long long",
    np.dtype(np.uint8): "unsigned char", np.dtype(np.uint16): "unsigned short",
    np.dtype(np.uint32): "unsigned int", np.dtype(np.uint64): "unsigned long long",
    np.dtype(np.bool_): "bool",
}


_PRELUDE = """\
#include <algorithm>
#include <cmath>
#include <cstddef>
// CUDA's device functions that a kernel may call, as the host's C++ has them
using std::min; using std::max; using std::pow; using std::sqrt; using std::exp;
using std::log; using std::fabs;
template <typename X> struct _Raw {
  X* p;
  X& operator[](std::ptrdiff_t j) const { return p[j]; }
};
// a raw input is const in CuPy (const CArray): a kernel that writes into one fails here too
template <typename X> struct _RawIn {
  const X* p;
  const X& operator[](std::ptrdiff_t j) const { return p[j]; }
};
"""

_LIBS = {}                  # source -> the compiled function


class _Param:
    def __init__(self, text):
        words = text.split()
        if len(words) == 3 and words[0] == "raw":
            self.raw, self.type, self.name = True, words[1], words[2]
        elif len(words) == 2:
            self.raw, self.type, self.name = False, words[0], words[1]
        else:
            raise ValueError(f"Syntax error: {text!r}")
        if not re.fullmatch(r"[A-Za-z_]\w*", self.name):
            raise ValueError(f"Invalid parameter name: {self.name!r}")
        if self.name == "i":
            raise ValueError("Can not use 'i' as a parameter name")
        if self.name.startswith("_"):
            raise ValueError(f"Parameter names starting with '_' are reserved: {self.name!r}")
        # as CuPy: one letter is a type placeholder such as T (np.dtype("T") would be
        # NumPy's string type, so it is not asked), anything else a dtype's name, which
        # NumPy reads ('float' is float64), and a name it does not know is an error
        if len(self.type) == 1:
            self.dtype = None
        else:
            try:
                self.dtype = np.dtype(self.type)
            except TypeError:
                raise TypeError(f"data type {self.type!r} not understood") from None
            if self.dtype not in _CTYPES:
                raise TypeError(f"the stand-in has no C type for {self.dtype} "
                                f"({self.type!r})")


def _parse(params):
    return [_Param(p) for p in params.split(",") if p.strip()]


class ElementwiseKernel:
    """The stand-in's ``cupy.ElementwiseKernel`` (see the module docstring)."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, **kwargs):
        self.in_params, self.out_params = _parse(in_params), _parse(out_params)
        names = [p.name for p in self.in_params + self.out_params]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: a parameter name is used twice: {names}")
        self.operation, self.name, self.preamble = operation, name, preamble
        self.return_tuple = return_tuple

    def __call__(self, *args, size=None):
        from cupy import CALLS, ndarray
        CALLS["op:" + self.name] += 1
        params = self.in_params + self.out_params
        if len(args) != len(params):
            raise TypeError(f"{self.name}: the stand-in wants every input and output "
                            f"passed ({len(params)} arguments), got {len(args)}")
        types, shape = {}, None
        for p, a in zip(params, args):
            if isinstance(a, ndarray):
                if p.dtype is None:
                    if types.setdefault(p.type, a._a.dtype) != a._a.dtype:
                        raise TypeError(f"{self.name}: type {p.type} is both "
                                        f"{types[p.type]} and {a._a.dtype}")
                elif a._a.dtype != p.dtype:
                    raise TypeError(f"{self.name}: {p.name} must be {p.dtype}, got "
                                    f"{a._a.dtype} (the stand-in does not cast arrays)")
                if not p.raw:
                    if shape is not None and a._a.shape != shape:
                        raise ValueError(f"{self.name}: the stand-in wants every non-raw "
                                         f"array of one shape, got {shape} and {a._a.shape}")
                    shape = a._a.shape
            elif isinstance(a, np.ndarray):
                raise TypeError(f"{self.name}: {p.name} is a NumPy array; CuPy wants "
                                f"device arrays")
            elif p.raw or p in self.out_params:
                raise TypeError(f"{self.name}: {p.name} must be an array, got "
                                f"{type(a).__name__}")
        n = int(np.prod(shape)) if shape is not None else size
        if n is None:
            raise ValueError(f"{self.name}: the size of the loop is unknown (no non-raw "
                             f"array and no size=)")

        def dtype_of(p):
            if p.dtype is not None:
                return p.dtype
            if p.type not in types:
                raise TypeError(f"{self.name}: the type {p.type} of {p.name} is not "
                                f"given by any array")
            return types[p.type]

        fn = self._compile({t: types[t] for t in sorted(types)},
                           [dtype_of(p) for p in params],
                           [not isinstance(a, ndarray) for a in args])
        keep, back, ptrs = [], [], []
        for p, a in zip(params, args):
            if isinstance(a, ndarray):
                arr = a._a
                if not arr.flags.c_contiguous:       # a copy in, and for outputs back out
                    tmp = np.ascontiguousarray(arr)
                    if p in self.out_params or p.raw:
                        back.append((arr, tmp))
                    arr = tmp
            else:
                arr = np.array(a, dtype=dtype_of(p))
            keep.append(arr)
            ptrs.append(arr.ctypes.data)
        fn(ctypes.c_ssize_t(n), (ctypes.c_void_p * len(ptrs))(*ptrs))
        for dst, tmp in back:
            dst[...] = tmp
        outs = args[len(self.in_params):]
        return outs if (len(outs) > 1 or self.return_tuple) else outs[0]

    def _compile(self, types, dtypes, scalars):
        lines = [_PRELUDE]
        lines += [f"typedef {_CTYPES[d]} {t};" for t, d in types.items()]
        lines += [self.preamble, 'extern "C" void _kernel(std::ptrdiff_t _n, void** _a) {']
        loop = []
        params = self.in_params + self.out_params
        for k, (p, d) in enumerate(zip(params, dtypes)):
            c = _CTYPES[d]
            const = "const " if p in self.in_params else ""
            if p.raw:
                raw = "_RawIn" if p in self.in_params else "_Raw"
                lines.append(f"  const {raw}<{c}> {p.name} = {{({c}*)_a[{k}]}};")
            elif scalars[k]:
                lines.append(f"  const {c} {p.name} = *(const {c}*)_a[{k}];")
            else:
                loop.append(f"    {const}{c}& {p.name} = (({c}*)_a[{k}])[i];")
        lines.append("  for (std::ptrdiff_t i = 0; i < _n; i++) {")
        lines += loop
        lines += ["    " + self.operation + ";", "  }", "}"]   # CuPy adds the ;
        return _build("\n".join(lines) + "\n")


def _build(source):
    fn = _LIBS.get(source)
    if fn is not None:
        return fn
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    folder = os.path.join(tempfile.gettempdir(), f"fake-cupy-kernels-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    lib = os.path.join(folder, key + ".so")
    if not os.path.exists(lib):
        tmp = f"{lib}.{os.getpid()}.tmp"
        try:
            r = subprocess.run(["g++", "-O2", "-std=c++17", "-shared", "-fPIC", "-x", "c++",
                                "-", "-o", tmp], input=source, capture_output=True, text=True)
        except FileNotFoundError:
            raise RuntimeError("the stand-in runs GPU kernels as C++ and needs g++ "
                               "(apt-get install g++)") from None
        if r.returncode != 0:
            raise RuntimeError(f"the stand-in could not compile a kernel:\n{r.stderr}\n"
                               f"--- source ---\n{source}")
        os.replace(tmp, lib)
    fn = ctypes.CDLL(lib)._kernel
    fn.restype = None
    fn.argtypes = [ctypes.c_ssize_t, ctypes.POINTER(ctypes.c_void_p)]
    _LIBS[source] = fn
    return fn
