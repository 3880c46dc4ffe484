"""Matmul precision: ``gpunn.set_precision("fp32" | "tf32")``.

TF32 rounds float32 matmul inputs to a 10-bit mantissa on NVIDIA GPUs of compute
capability 8.0+ (Ampere and newer: tensor cores), several times faster than full float32
at about 1e-3 relative error per product. It is off by default (unless ``CUPY_TF32=1`` is
set when gpunn is imported). It can be switched at any time: on CuPy 13 and newer through
CuPy's float32 compute-type setter, which every later 2-D matmul reads. On GPUs older than
compute capability 8.0 there are no TF32 tensor cores: asking for it warns and matmuls stay
full float32. On the CPU (NumPy) the setting has no effect: there is no TF32 there.
"""

from __future__ import annotations

import os
import sys
import warnings

PRECISIONS = ("fp32", "tf32")
_state = {"precision": "tf32" if os.environ.get("CUPY_TF32", "0").strip() not in ("", "0")
          else "fp32"}
#: First CuPy major version whose float32 compute type can be changed at run time.
SETTER_SINCE = 13


def get_precision() -> str:
    """The current matmul precision, ``"fp32"`` or ``"tf32"``."""
    return _state["precision"]


def set_precision(precision: str) -> None:
    """Choose full float32 (``"fp32"``, default) or TF32 (``"tf32"``) GPU matmuls.

    Takes effect for every later matmul, also in a process that has already run some.

    Raises
    ------
    ValueError
        Anything but ``"fp32"`` or ``"tf32"``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got "
                         f"{precision!r}")
    _state["precision"] = precision
    if "cupy" in sys.modules:  # never import CuPy just for this
        apply_to_cupy()


def apply_to_cupy() -> None:
    """Set CuPy's float32 matmul compute type to match :func:`get_precision`."""
    import cupy

    tf32 = _state["precision"] == "tf32"
    linalg = _compute_type_module(cupy)
    if linalg is None:
        # CuPy 12 and older read CUPY_TF32 once, at the first float32 matmul.
        os.environ["CUPY_TF32"] = "1" if tf32 else "0"
        warnings.warn(f"gpunn: CuPy {cupy.__version__} has no run-time TF32 switch; "
                      "CUPY_TF32 set, which applies only if no float32 matmul has run yet "
                      f"in this process (CuPy >= {SETTER_SINCE} switches at any time)",
                      RuntimeWarning, stacklevel=3)
        return
    if tf32 and not _tf32_capable(cupy):
        warnings.warn("gpunn: TF32 needs a GPU of compute capability 8.0 or newer; this "
                      f"one is {cupy.cuda.Device().compute_capability}: float32 matmuls stay "
                      "full precision", RuntimeWarning, stacklevel=3)
        tf32 = False
    linalg.set_compute_type(cupy.float32, linalg.COMPUTE_TYPE_TF32 if tf32
                            else linalg.COMPUTE_TYPE_DEFAULT)


def _compute_type_module(cupy):
    """CuPy's compute-type module, or None on CuPy versions without the setter."""
    try:
        major = int(str(cupy.__version__).split(".")[0])
    except ValueError:
        major = 0
    if major < SETTER_SINCE:
        return None
    try:
        from cupy._core import _routines_linalg as linalg
    except ImportError:
        return None
    needed = ("set_compute_type", "COMPUTE_TYPE_TF32", "COMPUTE_TYPE_DEFAULT")
    return linalg if all(hasattr(linalg, name) for name in needed) else None


def _tf32_capable(cupy) -> bool:
    try:
        return int(cupy.cuda.Device().compute_capability) >= 80
    except Exception:  # no current device to ask: let CuPy decide
        return True
