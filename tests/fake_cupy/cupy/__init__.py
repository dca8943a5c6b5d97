"""A NumPy-backed stand-in for CuPy, for the tests only: never a GPU.

GPUs are lent to this project rarely and briefly, and the code that runs only on CuPy
arrays (the ``xp is not np`` branches, the host/device copies in the data pipeline,
checkpoints and metrics, ``train.py --device cuda``) would otherwise run for the first
time on a short GPU lease. Put this folder first on ``sys.path`` (``PYTHONPATH=tests/fake_cupy``)
and ``import cupy`` gives this module: its arrays hold NumPy arrays, compute with
NumPy, and behave like CuPy's where CuPy differs from NumPy in ways that break code:

- they are not NumPy arrays: ``isinstance(a, numpy.ndarray)`` is False, and turning
  one into a NumPy array implicitly (``numpy.asarray(a)``) raises CuPy's TypeError;
  ``cupy.asnumpy(a)`` or ``a.get()`` copies it to the host;
- an operation that mixes them with NumPy arrays raises TypeError, as CuPy does
  (``cupy.asarray`` / ``cupy.array`` copy host data in, as CuPy's do);
- reductions and scalar indexing give 0-d arrays, not NumPy scalars;
- ``cupy.asarray`` of host data copies it (device memory is separate).

It also counts what the code asks of it, in ``CALLS`` (a Counter): every function,
ufunc or array method called ("op:NAME"), every index read or write ("getitem",
"setitem"), every copy of a value to the host ("sync:..."). On a GPU each of those is
a kernel launch or at least some microseconds of CuPy's Python on the host, so the
counts per training step are what bench/calls.py reports.

What it cannot check: CuPy's own kernels, functions NumPy has and CuPy lacks, speed,
and anything about a real GPU. ``cuda.runtime.getDeviceProperties(0)["name"]`` says
what it is, so no log can mistake it for a GPU.
"""
import collections as _collections

import numpy as _np

__version__ = "0.0-numpy-stand-in"
NAME = b"NumPy stand-in for CuPy (tests/fake_cupy), not a GPU"
CALLS = _collections.Counter()       # see the docstring


class _MemoryPointer:
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


class ndarray:
    """A 'device' array: a NumPy array behind CuPy's interface."""

    __slots__ = ("_a",)
    __array_priority__ = 1000
    __hash__ = None

    def __init__(self, shape, dtype=float, order="C"):
        self._a = _np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a):
        out = cls.__new__(cls)
        out._a = a
        return out

    # -- the host boundary
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None):
        CALLS["sync:get"] += 1
        return _np.array(self._a, order=order)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method) if method != "__call__" else ufunc,
                     inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, args, kwargs)

    @property
    def data(self):
        """CuPy's MemoryPointer, as far as code reads it: ``.ptr``, the address of the
        first element (of a view too)."""
        return _MemoryPointer(self._a.__array_interface__["data"][0])

    # -- attributes and methods: NumPy's, on the wrapped array
    def __getattr__(self, name):
        if name.startswith("__"):        # not NumPy's __array_interface__ and the like
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return _Fn(attr)
        return _wrap(attr)

    def __getitem__(self, key):
        CALLS["getitem"] += 1
        return _wrap(self._a[_unwrap(key, strict=False)])

    def __setitem__(self, key, value):
        CALLS["setitem"] += 1
        self._a[_unwrap(key, strict=False)] = _unwrap(value, strict=False)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __format__(self, spec):
        return format(self._a, spec)

    def __repr__(self):
        return "fake_" + repr(self._a)

    __str__ = __repr__

    def __copy__(self):
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray._of(self._a.copy())

    def __reduce__(self):
        raise TypeError("a (stand-in) CuPy array is not pickled here: copy it to the "
                        "host with cupy.asnumpy first")


def _binary(ufunc, reflected=False, inplace=False):
    if inplace:
        def op(self, other):
            _call(ufunc, (self, other), {"out": self})
            return self
    elif reflected:
        def op(self, other):
            return _call(ufunc, (other, self), {})
    else:
        def op(self, other):
            return _call(ufunc, (self, other), {})
    return op


for _name, _uf in dict(add=_np.add, sub=_np.subtract, mul=_np.multiply,
                       truediv=_np.true_divide, floordiv=_np.floor_divide,
                       mod=_np.remainder, pow=_np.power, matmul=_np.matmul,
                       and_=_np.bitwise_and, or_=_np.bitwise_or, xor=_np.bitwise_xor,
                       lshift=_np.left_shift, rshift=_np.right_shift).items():
    _n = _name.rstrip("_")
    setattr(ndarray, f"__{_n}__", _binary(_uf))
    setattr(ndarray, f"__r{_n}__", _binary(_uf, reflected=True))
    setattr(ndarray, f"__i{_n}__", _binary(_uf, inplace=True))
for _name, _uf in dict(lt=_np.less, le=_np.less_equal, gt=_np.greater,
                       ge=_np.greater_equal, eq=_np.equal, ne=_np.not_equal).items():
    setattr(ndarray, f"__{_name}__", _binary(_uf))
def _host_value(name, convert):
    """bool(a), float(a), ...: a value copied to the host (on a GPU, a wait for it)."""
    def method(self):
        CALLS["sync:" + name] += 1
        return convert(self._a)
    return method


for _name, _convert in dict(__bool__=bool, __float__=float, __int__=int,
                            __complex__=complex).items():
    setattr(ndarray, _name, _host_value(_name, _convert))
for _name, _uf in dict(neg=_np.negative, pos=_np.positive, abs=_np.absolute,
                       invert=_np.invert).items():
    setattr(ndarray, f"__{_name}__", lambda self, _uf=_uf: _call(_uf, (self,), {}))


def _wrap(x):
    if isinstance(x, _np.ndarray):
        return ndarray._of(x)
    if isinstance(x, _np.generic):                  # CuPy gives 0-d arrays
        return ndarray._of(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _unwrap(x, strict=True):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        if strict:
            raise TypeError(f"Unsupported type {type(x)}: a NumPy array mixed with "
                            f"(stand-in) CuPy arrays; move it with cupy.asarray first")
        return x
    if isinstance(x, tuple):
        return tuple(_unwrap(v, strict) for v in x)
    if isinstance(x, list):
        return [_unwrap(v, strict) for v in x]
    if isinstance(x, dict):
        return {k: _unwrap(v, strict) for k, v in x.items()}
    return x


def _call(fn, args, kwargs, strict=True):
    CALLS["op:" + getattr(fn, "__name__", type(fn).__name__)] += 1
    out = fn(*_unwrap(args, strict), **_unwrap(kwargs, strict))
    if kwargs.get("out") is not None and isinstance(kwargs["out"], ndarray):
        return kwargs["out"]
    return _wrap(out)


class _Fn:
    """A NumPy function (or ufunc, or array method) on stand-in arrays; a ufunc's
    methods (``add.at``, ``maximum.reduce``) work too."""

    def __init__(self, fn, strict=True):
        self._fn = fn
        self._strict = strict
        self.__name__ = getattr(fn, "__name__", "function")

    def __call__(self, *args, **kwargs):
        return _call(self._fn, args, kwargs, self._strict)

    def __getattr__(self, name):
        attr = getattr(self._fn, name)
        return _Fn(attr, self._strict) if callable(attr) else attr


def _copy_in(a, dtype=None, copy=None, order="K", **kw):
    """cupy.asarray / cupy.array: host data is copied to the 'device'."""
    if isinstance(a, ndarray):
        out = a._a if dtype is None else a._a.astype(dtype, copy=False)
        return ndarray._of(out.copy() if copy else out)
    return ndarray._of(_np.array(_unwrap(a, strict=False), dtype=dtype, order=order, **kw))


def asarray(a, dtype=None, order=None):
    return _copy_in(a, dtype=dtype, order=order or "K")


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    return _copy_in(obj, dtype=dtype, copy=copy, order=order, ndmin=ndmin)


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    import sys
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


class _Generator:
    """cupy.random.Generator: NumPy's, giving stand-in arrays."""

    def __init__(self, seed=None):
        self._g = _np.random.default_rng(seed)

    def __getattr__(self, name):
        return _Fn(getattr(self._g, name))


class _Namespace:
    def __init__(self, **attrs):
        self.__dict__.update(attrs)


random = _Namespace(default_rng=_Generator, Generator=_Generator)
lib = _Namespace(stride_tricks=_Namespace(as_strided=_Fn(_np.lib.stride_tricks.as_strided)))


class _Stream:
    def synchronize(self):
        pass


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(device):
        return {"name": NAME, "totalGlobalMem": 0}


class _Stream0:
    null = _Stream()


cuda = _Namespace(runtime=_Runtime(), Stream=_Stream0)


def __getattr__(name):
    """Everything else is NumPy's: types and constants as they are, functions on
    stand-in arrays (refusing NumPy arrays, as CuPy's do)."""
    attr = getattr(_np, name)
    if isinstance(attr, type) or not callable(attr):
        return attr
    return _Fn(attr)


from cupy._elementwise import ElementwiseKernel  # noqa: E402, F401  (g++ on the CPU; cupy.ElementwiseKernel)
