"""Matmul precision: ``gpunn.set_precision("fp32" | "tf32")``.

TF32 rounds float32 matmul inputs to a 10-bit mantissa on NVIDIA GPUs of compute
capability 8.0+ (tensor cores), several times faster than full float32 at about 1e-3
relative error per product. It is off by default. On the CPU (NumPy) the setting has no
effect: there is no TF32 there.
"""

from __future__ import annotations

import os
import sys
import warnings

PRECISIONS = ("fp32", "tf32")
_state = {"precision": "fp32"}


def get_precision() -> str:
    """The current matmul precision, ``"fp32"`` or ``"tf32"``."""
    return _state["precision"]


def set_precision(precision: str) -> None:
    """Choose full float32 (``"fp32"``, default) or TF32 (``"tf32"``) GPU matmuls.

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
    try:
        from cupy._core import _routines_linalg as linalg

        linalg.set_compute_type(cupy.float32, linalg.COMPUTE_TYPE_TF32 if tf32
                                else linalg.COMPUTE_TYPE_DEFAULT)
    except (ImportError, AttributeError):
        # Older/newer CuPy without that hook: its documented switch is an environment
        # variable read before the first float32 matmul of the process.
        os.environ["CUPY_TF32"] = "1" if tf32 else "0"
        warnings.warn("gpunn: this CuPy has no runtime TF32 switch; CUPY_TF32 set, which "
                      "only applies before the process's first float32 matmul",
                      RuntimeWarning, stacklevel=2)
