"""A stand-in for CuPy, built on NumPy, for testing gpunn's CUDA control flow on a CPU.

It reproduces the CuPy behaviours that gpunn's CuPy backend must cope with, and nothing
else; its numbers are NumPy's, so tests use it for control flow, never for numbers:

- several devices and a current device (``cupy.cuda.Device(i)`` as a context); every array
  remembers the device it was allocated on, and an operation on an array of another device
  than the current one raises, as CuPy's kernels do;
- ``array_api_compat.cupy``'s creation functions ignore ``device=`` and allocate on the
  current device (``asarray`` honours it);
- ``cupy.random`` draws only float32 and float64 (``TypeError`` otherwise);
- streams and events that track host-to-device copies still in flight;
- CuPy's float32 compute-type setter, recording what it was asked.
"""

from __future__ import annotations

import contextlib
import sys
import types

import array_api_compat
import array_api_compat.numpy as cnp
import numpy as np

_CREATION = {"zeros", "empty", "ones", "full", "arange", "eye", "linspace", "zeros_like",
             "empty_like", "ones_like", "full_like"}


class State:
    """Everything the fake knows: current device, streams, compute-type calls."""

    def __init__(self, count: int = 2, version: str = "14.2.0", capability: str = "90"):
        self.count, self.version, self.capability = count, version, capability
        self.stack = [0]
        self.streams: list[Stream] = []
        self.compute_types: list[tuple] = []
        #: Operations that would each be one GPU launch on CuPy (elementwise, reduction,
        #: matmul, memset, copy, compiled kernel): a count to compare, not CuPy's exact one.
        self.launches = 0
        #: Operations that make the host wait for the device on CuPy: reading a value
        #: (float, int, bool, item, get) and indexing with a boolean mask.
        self.syncs = 0
        #: ``cupy.empty``/``empty_like`` return garbage (NaN, or -7 in integers), as device
        #: memory is: set where kernels really run, so an output they leave unwritten shows.
        self.poison = False

    @property
    def current(self) -> int:
        return self.stack[-1]


STATE = State()


#: NumPy functions that only re-describe memory (views, metadata): no launch on a GPU.
_NO_LAUNCH = {"reshape", "transpose", "matrix_transpose", "shape", "ndim", "result_type",
              "can_cast", "broadcast_to", "expand_dims", "squeeze", "ravel", "swapaxes",
              "moveaxis", "size", "may_share_memory", "shares_memory", "iscomplexobj",
              "isrealobj", "atleast_1d", "atleast_2d", "empty_like"}


def _check(arrays) -> None:
    for a in arrays:
        if isinstance(a, FakeArray) and a._dev != STATE.current:
            raise ValueError(f"Array device must be same as the current device: array "
                             f"device = {a._dev} while current = {STATE.current}")


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _flatten(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _flatten(item)
    else:
        yield obj


def _unwrap(obj):
    if isinstance(obj, FakeArray):
        return obj.view(np.ndarray)
    if isinstance(obj, tuple):
        return tuple(_unwrap(o) for o in obj)
    if isinstance(obj, list):
        return [_unwrap(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def wrap(result, device: int | None = None):
    """NumPy results as arrays of the current (or given) device; 0-d for scalars."""
    if isinstance(result, tuple):
        return tuple(wrap(r, device) for r in result)
    if isinstance(result, FakeArray):
        return result
    if isinstance(result, np.generic):
        result = np.asarray(result)
    if isinstance(result, np.ndarray):
        out = result.view(FakeArray)
        out._dev = STATE.current if device is None else device
        return out
    return result


class Device:
    """``cupy.cuda.Device``: a context that makes device ``id`` current."""

    def __init__(self, index: int | None = None):
        self.id = STATE.current if index is None else int(index)
        if not 0 <= self.id < STATE.count:
            raise RuntimeError(f"cudaErrorInvalidDevice: device {self.id}")

    @property
    def compute_capability(self) -> str:
        return STATE.capability

    def __enter__(self):
        STATE.stack.append(self.id)
        return self

    def __exit__(self, *exc):
        STATE.stack.pop()
        return False

    def use(self) -> None:
        STATE.stack[0] = self.id

    def synchronize(self) -> None:
        for stream in STATE.streams:
            stream.synchronize()

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


class FakeArray(np.ndarray):
    """A NumPy array that lives on one fake device."""

    __module__ = "cupy._core.core"  # where cupy.ndarray lives: gpunn.to_numpy calls .get()

    def __array_finalize__(self, obj):
        self._dev = getattr(obj, "_dev", STATE.current)

    @property
    def device(self) -> Device:
        return Device(self._dev)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _check(list(inputs) + list(out or ()))
        STATE.launches += 1
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        _check(list(_flatten(args)) + list(_flatten(kwargs)))
        if func.__name__ not in _NO_LAUNCH:
            STATE.launches += 1
        return wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def get(self, stream=None) -> np.ndarray:
        STATE.syncs += 1
        return np.array(self.view(np.ndarray), copy=True)

    def _read(self, convert):
        STATE.syncs += 1
        return convert(self.view(np.ndarray))

    def __float__(self):
        return self._read(float)

    def __int__(self):
        return self._read(int)

    def __bool__(self):
        return self._read(bool)

    def __index__(self):
        return self._read(lambda a: a.__index__())

    def item(self, *args):
        return self._read(lambda a: a.item(*args))

    def __getitem__(self, key):
        _count_mask(key)
        key = _unwrap(key)
        out = super().__getitem__(key)
        if isinstance(out, np.generic):
            # CuPy gives a 0-d array viewing the element, where NumPy gives a scalar.
            out = super().__getitem__((key if isinstance(key, tuple) else (key,)) + (...,))
        return out

    def __setitem__(self, key, value):
        _count_mask(key)
        # A device-to-device copy on CuPy: the value is not read on the host.
        super().__setitem__(_unwrap(key), _unwrap(value))

    def set(self, host, stream=None) -> None:
        """Host-to-device copy, queued on ``stream`` (in flight until synchronised)."""
        self.view(np.ndarray)[...] = host
        if stream is not None:
            stream.issued += 1


def _count_mask(key) -> None:
    """A boolean mask index: CuPy must learn how many elements are selected (a sync)."""
    keys = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, np.ndarray) and k.dtype == bool for k in keys):
        STATE.syncs += 1


class Event:
    def __init__(self, stream):
        self.stream, self.count = stream, stream.issued

    def synchronize(self) -> None:
        self.stream.done = max(self.stream.done, self.count)


class Stream:
    """Counts the copies queued on it and how many are known to have completed."""

    def __init__(self, non_blocking: bool = False):
        self.issued = self.done = 0
        STATE.streams.append(self)

    def record(self) -> Event:
        return Event(self)

    def wait_event(self, event) -> None:
        pass

    def synchronize(self) -> None:
        self.done = self.issued

    @property
    def in_flight(self) -> int:
        return self.issued - self.done


class RandomState:
    # Another bit generator than NumPy's default, as CuPy's (cuRAND) is: the same seed
    # gives other numbers than the host generator, which is what the GPU does.
    def __init__(self, seed=None):
        self._rng = np.random.Generator(np.random.Philox(seed))

    @staticmethod
    def _dtype(dtype):
        dtype = np.dtype(dtype)
        if dtype.char not in ("f", "d"):  # CuPy's own check, word for word
            raise TypeError("cupy.random only supports float32 and float64")
        return dtype

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return wrap(self._rng.normal(loc, scale, size).astype(self._dtype(dtype)))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return wrap(self._rng.uniform(low, high, size).astype(self._dtype(dtype)))

    def random_sample(self, size=None, dtype=float):
        return wrap(self._rng.random(size).astype(self._dtype(dtype)))

    def permutation(self, n):
        return wrap(self._rng.permutation(n))


class _Pool:
    def free_all_blocks(self):
        pass

    def free_bytes(self):
        return 0

    def total_bytes(self):
        return 0


def _asarray(a, dtype=None):
    if isinstance(a, FakeArray) and a._dev != STATE.current:
        a = a.view(np.ndarray)  # a peer copy onto the current device
    return wrap(np.array(_unwrap(a), dtype=dtype, copy=True))


def _creation(fn):
    def call(*args, device=None, **kwargs):
        if not fn.__name__.startswith("empty"):
            STATE.launches += 1  # a fill kernel
        return _garbage(wrap(fn(*_unwrap(args), **_unwrap(kwargs))), fn.__name__)
    return call  # device= ignored, as CuPy's


def _garbage(a, name: str):
    if STATE.poison and name.startswith("empty") and a.dtype.kind in "fiu":
        a.view(np.ndarray).fill(np.nan if a.dtype.kind == "f" else -7 % 256
                                if a.dtype.kind == "u" else -7)
    return a


def _namespace() -> types.ModuleType:
    """``array_api_compat.cupy``: the NumPy wrapper with CuPy's device behaviour."""
    ns = types.ModuleType("array_api_compat.cupy")
    for name in dir(cnp):
        if name.startswith("_"):
            continue
        obj = getattr(cnp, name)
        if isinstance(obj, type) or not callable(obj):
            setattr(ns, name, obj)
        elif name in _CREATION:
            setattr(ns, name, _creation(obj))
        elif name in ("clip", "sign"):
            # array_api_compat's CuPy clip and sign assign through boolean masks
            # (common/_aliases.py: ``out[ia] = a[ia]``; ``out[xp.isnan(x)] = xp.nan``),
            # and a mask index makes CuPy wait for the device.
            def masked(*args, _fn=obj, **kwargs):
                _check(list(_flatten(args)) + list(_flatten(kwargs)))
                STATE.syncs += 1
                return wrap(_fn(*_unwrap(args), **_unwrap(kwargs)))
            setattr(ns, name, masked)
        elif name == "asarray":
            def asarray(obj_, dtype=None, device=None, copy=None):
                with (Device(device.id) if device is not None else contextlib.nullcontext()):
                    return wrap(cnp.asarray(_unwrap(obj_), dtype=dtype, copy=copy))
            ns.asarray = asarray
        else:
            def call(*args, _fn=obj, **kwargs):
                _check(list(_flatten(args)) + list(_flatten(kwargs)))
                return wrap(_fn(*args, **kwargs))
            setattr(ns, name, call)
    return ns


def modules(state: State) -> dict:
    """The fake modules, keyed by the names to put in ``sys.modules``."""
    global STATE
    STATE = state
    cupy = types.ModuleType("cupy")
    cupy.__version__ = state.version
    cupy.ndarray = FakeArray
    for name in ("float16", "float32", "float64", "int32", "int64", "bool_"):
        setattr(cupy, name, getattr(np, name))
    cupy.dtype = np.dtype
    for name in ("zeros", "empty", "ones", "eye", "arange"):
        setattr(cupy, name, _creation(getattr(np, name)))
    cupy.zeros_like = lambda a, dtype=None: wrap(np.zeros_like(_unwrap(a), dtype=dtype))
    cupy.empty_like = lambda a, dtype=None: _garbage(  # zeros unless poisoned: counts only
        wrap(np.zeros_like(_unwrap(a), dtype=dtype)), "empty_like")
    cupy.asarray = _asarray
    cupy.ascontiguousarray = lambda a, dtype=None: wrap(np.ascontiguousarray(_unwrap(a),
                                                                             dtype=dtype))
    cupy.asnumpy = lambda a: a.get() if isinstance(a, FakeArray) else np.asarray(a)
    cupy.matmul, cupy.sum, cupy.take = np.matmul, np.sum, np.take
    cupy.get_default_memory_pool = cupy.get_default_pinned_memory_pool = _Pool

    class RawModule:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("the fake CuPy compiles no kernels: set GPUNN_CUDA_KERNELS=0 "
                               "or patch gpunn.backend.cupy_kernels.function")

    cupy.RawModule = RawModule
    runtime = types.ModuleType("cupy.cuda.runtime")
    runtime.getDeviceCount = lambda: state.count
    runtime.memGetInfo = lambda: (8 << 30, 16 << 30)
    runtime.getDeviceProperties = lambda i: {"name": b"Fake GPU"}
    runtime.runtimeGetVersion = runtime.driverGetVersion = lambda: 13000
    cuda = types.ModuleType("cupy.cuda")
    cuda.runtime, cuda.Device, cuda.Stream, cuda.Event = runtime, Device, Stream, Event
    default_streams: dict = {}
    cuda.get_current_stream = lambda: default_streams.setdefault(state.current, Stream())
    cupy.cuda = cuda
    random = types.ModuleType("cupy.random")
    random.RandomState = RandomState
    cupy.random = random
    core = types.ModuleType("cupy._core")
    linalg = types.ModuleType("cupy._core._routines_linalg")
    linalg.COMPUTE_TYPE_DEFAULT, linalg.COMPUTE_TYPE_TF32 = 1, 7
    linalg.set_compute_type = lambda dtype, ct: state.compute_types.append(
        (np.dtype(dtype).name, ct))
    core._routines_linalg = linalg
    cupy._core = core
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype=float: np.empty(shape, dtype)
    return {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime,
            "cupy.random": random, "cupy._core": core, "cupy._core._routines_linalg": linalg,
            "cupyx": cupyx, "array_api_compat.cupy": _namespace()}


GPUNN_CUDA_MODULES = ("gpunn.backend.cupy_backend", "gpunn.backend.cupy_kernels")


def record_kernels(monkeypatch) -> list:
    """Make gpunn's compiled-kernel launches count (and be recorded) instead of running:
    returns the list of ``(name, dtype, args)`` launched. Their outputs are left unset, so
    use this for launch counts and arguments, never for values."""
    import gpunn.backend.cupy_kernels as ck

    calls = []

    def function(name, dtype):
        if np.dtype(dtype) not in (np.float32, np.float64):
            return None

        def launch(grid, block, args, **kw):
            STATE.launches += 1
            calls.append((name, np.dtype(dtype), args))
        return launch

    monkeypatch.setattr(ck, "function", function)
    monkeypatch.setenv("GPUNN_CUDA_KERNELS", "1")
    return calls


@contextlib.contextmanager
def installed(monkeypatch, **settings):
    """Put the fake in place of CuPy (and gpunn's CuPy modules re-imported against it)."""
    from gpunn.backend import detect

    state = State(**settings)
    for name, module in modules(state).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(array_api_compat, "cupy", sys.modules["array_api_compat.cupy"],
                        raising=False)
    import gpunn.backend as gb

    for name in GPUNN_CUDA_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delattr(gb, name.rsplit(".", 1)[1], raising=False)
    monkeypatch.setenv("GPUNN_CUDA_KERNELS", "0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    detect.cuda_status.cache_clear()
    try:
        yield state
    finally:
        detect.cuda_status.cache_clear()
        for name in GPUNN_CUDA_MODULES:  # bound to the fake: never reuse them
            sys.modules.pop(name, None)
            if hasattr(gb, name.rsplit(".", 1)[1]):
                delattr(gb, name.rsplit(".", 1)[1])
