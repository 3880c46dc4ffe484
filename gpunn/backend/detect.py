"""Lazy, cached detection of a usable CUDA device through CuPy.

Nothing here imports CuPy at module import time: ``import gpunn`` must work (and stay
fast) on machines where CuPy is missing or where importing it would touch the driver.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

INSTALL_HINT = ('install CuPy for your CUDA version: pip install "gpunn[cuda12]" '
                '(or "gpunn[cuda13]")')


@dataclass(frozen=True)
class CudaStatus:
    """What the CUDA probe found.

    Attributes
    ----------
    usable : bool
        True when CuPy imports and at least one device accepted an allocation.
    count : int
        Number of visible CUDA devices (0 when unusable).
    reason : str
        Why CUDA is unusable, or a description of device 0 when it is usable.
    """

    usable: bool
    count: int
    reason: str


def _hidden_by_env() -> bool:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1", "none", "NoDevFiles")


@functools.lru_cache(maxsize=1)
def cuda_status() -> CudaStatus:
    """Probe CuPy and the CUDA driver once per process.

    Returns
    -------
    CudaStatus
        Cached; call ``cuda_status.cache_clear()`` to probe again.
    """
    try:
        import cupy
    except ImportError:
        return CudaStatus(False, 0, "CuPy is not installed")
    except Exception as exc:  # a broken CuPy install must not break gpunn
        return CudaStatus(False, 0, f"CuPy failed to import ({type(exc).__name__}: {exc})")
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        # CuPy installed on a machine without a driver raises CUDARuntimeError
        # (cudaErrorInsufficientDriver / cudaErrorNoDevice) here, not at import.
        text = str(exc)
        if _hidden_by_env():
            return CudaStatus(False, 0, "CUDA_VISIBLE_DEVICES hides every GPU")
        if "InsufficientDriver" in text or "driver" in text.lower():
            return CudaStatus(False, 0, f"no usable CUDA driver ({text})")
        return CudaStatus(False, 0, f"CUDA runtime error ({text})")
    if count == 0:
        if _hidden_by_env():
            return CudaStatus(False, 0, "CUDA_VISIBLE_DEVICES hides every GPU")
        return CudaStatus(False, 0, "no CUDA device found")
    try:
        with cupy.cuda.Device(0):
            cupy.zeros(1, dtype=cupy.float32).sum().item()
            props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception as exc:
        return CudaStatus(False, 0, f"CUDA device 0 is not usable ({type(exc).__name__}: {exc})")
    return CudaStatus(True, count, f"{name} ({count} device{'s' if count > 1 else ''})")


def available_devices() -> list[str]:
    """List the device names usable right now.

    Returns
    -------
    list of str
        Always starts with ``"cpu"``; followed by ``"cuda:0"``, ``"cuda:1"``, ... for
        each usable GPU.
    """
    status = cuda_status()
    return ["cpu"] + [f"cuda:{i}" for i in range(status.count if status.usable else 0)]
