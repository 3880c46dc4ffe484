"""Backend selection: ``get_backend(spec)`` turns a device spec into a :class:`Backend`."""

from __future__ import annotations

import os
import re
import types
import warnings

import array_api_compat

from ..errors import DeviceFallbackWarning, DeviceUnavailableError, describe, user_stacklevel
from .base import Backend
from .detect import INSTALL_HINT, available_devices, cuda_status
from .fastpath import fast_update_for
from .numpy_backend import NumpyBackend
from .ops import DLPACK_CPU, DLPACK_CUDA, DLPACK_CUDA_HOST, array_context, dlpack_device, host_array
from .random import check_seed

__all__ = ["Backend", "NumpyBackend", "fast_update_for", "get_backend", "available_devices",
           "to_numpy", "from_dlpack", "parse_device", "resolve_device", "cuda_status",
           "array_context"]

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")
_fallback_noticed = False


def parse_device(spec: str) -> tuple[str, str | None]:
    """``(kind, index)`` of a device string: ``"auto"``, ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"`` (case and surrounding spaces ignored); the index is None or digits.

    Raises
    ------
    ValueError
        Any other string, said with what is expected (no "device:" prefix: the caller
        names where the string came from, an argument or a command-line flag).
    """
    match = _DEVICE_RE.match(spec.strip().lower())
    if not match or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    return match.group(1), match.group(2)


def resolve_device(spec: str | None = None) -> tuple[str, str]:
    """Turn a device string into a concrete device name and the reason it was chosen.

    Parameters
    ----------
    spec : str, optional
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` reads the
        ``GPUNN_DEVICE`` environment variable, else ``"auto"``.

    Returns
    -------
    device : str
        ``"cpu"`` or ``"cuda:N"``.
    reason : str
        One line saying why this device was picked.

    Raises
    ------
    ValueError
        Malformed spec.
    DeviceUnavailableError
        An explicit CUDA device that cannot be used.
    """
    source = "argument"
    if spec is None:
        spec = os.environ.get("GPUNN_DEVICE") or "auto"
        source = "GPUNN_DEVICE" if "GPUNN_DEVICE" in os.environ else "default"
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a str, a Backend or an array namespace, got "
                        f"{describe(spec)}")
    try:
        kind, index = parse_device(spec)
    except ValueError as exc:
        where = " (from GPUNN_DEVICE)" if source == "GPUNN_DEVICE" else ""
        raise ValueError(f"device{where}: {exc}") from None
    if kind == "cpu":
        return "cpu", f"requested ({source})" if source != "default" else "requested"
    status = cuda_status()
    if kind == "auto":
        if status.usable:
            return "cuda:0", f"auto: found {status.reason}"
        return "cpu", f"auto: no usable GPU, {status.reason}"
    idx = int(index or 0)
    if not status.usable:
        raise DeviceUnavailableError(
            f"device {spec!r} requested but CUDA is not usable: {status.reason}; "
            f"{INSTALL_HINT}, or use device='cpu' / 'auto'")
    if idx >= status.count:
        raise DeviceUnavailableError(
            f"device {spec!r} requested but only {status.count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{status.count - 1})")
    return f"cuda:{idx}", "requested"


def _notice_fallback(reason: str) -> None:
    global _fallback_noticed
    if not _fallback_noticed:
        _fallback_noticed = True
        warnings.warn(f"gpunn: running on CPU ({reason})", DeviceFallbackWarning,
                      stacklevel=user_stacklevel())


def silence_fallback_notice() -> None:
    """This process prints no CPU-fallback notice (an MPI rank other than 0: rank 0 says it
    for the job, and ``fit`` refuses ranks on different kinds of device)."""
    global _fallback_noticed
    _fallback_noticed = True


def get_backend(spec=None, dtype: str | None = None, seed: int | None = None) -> Backend:
    """Build the backend for a device spec.

    Parameters
    ----------
    spec : str, Backend, module or None
        ``"auto"`` (default, or ``GPUNN_DEVICE``), ``"cpu"``, ``"cuda"``, ``"cuda:N"``;
        an existing :class:`Backend` (returned as is, or with ``dtype`` applied);
        or an Array API namespace module such as ``array_api_strict``, ``numpy`` or
        ``cupy``.
    dtype : str, optional
        Floating dtype of parameters and activations; default float32 (or the given
        backend's dtype).
    seed : int, optional
        Seed of the backend's random generator (reseeds a given backend).

    Returns
    -------
    Backend
        ``backend.reason`` says why this device was chosen.
    """
    seed = check_seed(seed)  # before anything is built or reseeded
    if isinstance(spec, Backend):
        backend = spec if dtype is None or spec.dtype_name == dtype else spec.with_dtype(dtype)
        if seed is not None:
            backend.random.seed(seed)
        return backend
    dtype = dtype or "float32"
    if isinstance(spec, types.ModuleType):
        backend = _from_namespace(spec, dtype, seed)
        backend.reason = "namespace given"
        return backend
    device, reason = resolve_device(spec)
    if device == "cpu":
        if reason.startswith("auto"):
            _notice_fallback(reason[len("auto: "):])
        backend = NumpyBackend(dtype=dtype, seed=seed)
    else:
        from .cupy_backend import CupyBackend

        backend = CupyBackend(int(device.split(":")[1]), dtype=dtype, seed=seed)
    backend.reason = reason
    return backend


def _from_namespace(module, dtype, seed) -> Backend:
    name = module.__name__
    if name in ("numpy", "array_api_compat.numpy"):
        return NumpyBackend(dtype=dtype, seed=seed)
    if name in ("cupy", "array_api_compat.cupy"):
        from .cupy_backend import CupyBackend

        return CupyBackend(0, dtype=dtype, seed=seed)
    if not hasattr(module, "__array_api_version__"):
        # Not standard-compliant on its own; array_api_compat may wrap it (torch, dask).
        try:
            module = array_api_compat.array_namespace(module.asarray([0.0]))
        except Exception as exc:
            raise TypeError(f"device: module {name!r} is not an Array API namespace") from exc
    return Backend(module, dtype=dtype, seed=seed, name=name)


def to_numpy(a):
    """Copy any array (NumPy, CuPy, Array API) to a NumPy array on the host.

    Parameters
    ----------
    a : array_like

    Returns
    -------
    numpy.ndarray
    """
    return host_array(a)


def from_dlpack(x, device=None):
    """An array on a gpunn device from any DLPack array, sharing its memory when it is
    already there.

    gpunn's own arrays (what ``predict`` returns) are NumPy or CuPy arrays, which speak
    DLPack themselves: ``torch.from_dlpack(model.predict(X))`` shares their memory.

    Parameters
    ----------
    x : object with ``__dlpack__``
        A PyTorch tensor, JAX array, CuPy or NumPy array, ... of any shape. A PyTorch
        tensor that requires grad is refused: gpunn cannot pass gradients back to its
        autograd graph, so detach it first.
    device : str, Backend or module, optional
        Any :func:`get_backend` spec; ``None`` keeps ``x`` where it is (``"cpu"`` for host
        memory, ``"cuda:N"`` for GPU N).

    Returns
    -------
    numpy.ndarray or cupy.ndarray
        Same shape and dtype as ``x``; a view of ``x``'s memory unless ``x`` lives on
        another device (then a copy).

    Raises
    ------
    TypeError
        ``x`` does not speak DLPack, or requires grad.
    ValueError
        ``x`` lives on a device type gpunn has no backend for (device=None).
    """
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"from_dlpack x: expected an array with __dlpack__ (PyTorch, JAX, "
                        f"CuPy, NumPy), got {describe(x)}")
    if device is None:
        kind, index = dlpack_device(x)
        if kind not in (DLPACK_CPU, DLPACK_CUDA_HOST, DLPACK_CUDA):
            raise ValueError(f"from_dlpack x: expected an array in host or CUDA memory, "
                             f"got DLPack device type {kind}; pass device='cpu'")
        device = f"cuda:{index}" if kind == DLPACK_CUDA else "cpu"
    backend = get_backend(device)
    # The backend would cast floating arrays to its own dtype: ask for x's instead.
    name = str(getattr(x, "dtype", "")).rpartition(".")[2]
    with backend.context():
        return backend.asarray(x, dtype=name if hasattr(backend.xp, name) else None)
