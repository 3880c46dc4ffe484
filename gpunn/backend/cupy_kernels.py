"""Launchers for the CUDA kernels in ``kernels/gpunn_kernels.cu``.

The source is compiled by CuPy (NVRTC) the first time a kernel is needed on a device and
cached per device; importing this module compiles nothing. Every launcher returns
``None`` where it has no kernel (e.g. float16, softmax), and the caller then uses the
generic path. ``GPUNN_CUDA_KERNELS=0`` turns all of them off (for parity checks and as an
escape hatch).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cupy
import numpy as np

from .kernel_codes import ACTIVATION_CODES

SOURCE_PATH = Path(__file__).with_name("kernels") / "gpunn_kernels.cu"

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_THREADS = 256
_MAX_BLOCKS = 65535


def enabled() -> bool:
    """False when ``GPUNN_CUDA_KERNELS=0`` asks for the generic CuPy path."""
    return os.environ.get("GPUNN_CUDA_KERNELS", "1") != "0"


@functools.cache
def _module(device_id: int):
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=SOURCE_PATH.read_text(), options=("-std=c++14",))


def function(name: str, dtype):
    """The compiled kernel ``name`` for ``dtype`` on the current device, or ``None``."""
    suffix = _SUFFIX.get(np.dtype(dtype))
    if suffix is None or not enabled():
        return None
    return _function(name, suffix, cupy.cuda.Device().id)


@functools.cache
def _function(name: str, suffix: str, device_id: int):
    """Looked up once per (kernel, dtype, device), not at every launch."""
    return _module(device_id).get_function(f"{name}_{suffix}")


def _blocks(n: int) -> tuple[int]:
    return (max(1, min(_MAX_BLOCKS, (n + _THREADS - 1) // _THREADS)),)


def _scalar(dtype):
    return np.dtype(dtype).type


def can_bias_act(activation: str, dtype) -> bool:
    """True when :func:`bias_act_forward` has a kernel for this activation and dtype."""
    return activation in ACTIVATION_CODES and function("bias_act_forward", dtype) is not None


def bias_act_forward(z, b, activation: str, param: float):
    """In place ``z += b``; returns ``y = f(z)`` (``z`` itself for identity).

    Call only where :func:`can_bias_act` is true; ``z`` and ``b`` must be C-contiguous.
    """
    code = ACTIVATION_CODES[activation]
    kernel = function("bias_act_forward", z.dtype)
    y = z if activation == "identity" else cupy.empty_like(z)
    t = _scalar(z.dtype)
    kernel(_blocks(z.size), (_THREADS,), (z, b, y, np.int64(z.size), np.int64(z.shape[-1]),
                                          np.int32(code), t(param)))
    return y


def act_backward(z, y, g, activation: str, param: float):
    """``g * f'(z)`` in one pass, or None."""
    code = ACTIVATION_CODES.get(activation)
    kernel = function("act_backward", z.dtype) if code is not None else None
    if kernel is None or g.dtype != z.dtype or not all(
            a.flags.c_contiguous for a in (z, y, g)):
        return None
    out = cupy.empty_like(g)
    kernel(_blocks(z.size), (_THREADS,), (z, y, g, out, np.int64(z.size), np.int32(code),
                                          _scalar(z.dtype)(param)))
    return out


def softmax_xent(z, target):
    """Softmax cross-entropy from logits ``z (N, C)``.

    Parameters
    ----------
    z : (N, C) logits
    target : (N,) integer labels or (N, C) rows

    Returns
    -------
    (value, prob, grad) or None
        ``value`` is a 0-d device array: mean over rows of the cross-entropy.
    """
    rows, cols = z.shape
    dense = target.ndim == 2
    kernel = function("softmax_xent_dense" if dense else "softmax_xent_labels", z.dtype)
    if kernel is None or not z.flags.c_contiguous:
        return None
    target = cupy.ascontiguousarray(target, dtype=z.dtype if dense else cupy.int64)
    prob, grad = cupy.empty_like(z), cupy.empty_like(z)
    row_loss = cupy.empty((rows,), dtype=z.dtype)
    threads = 32
    while threads < min(cols, _THREADS):
        threads *= 2
    t = _scalar(z.dtype)
    kernel((max(1, min(rows, _MAX_BLOCKS)),), (threads,),
           (z, target, prob, grad, row_loss, np.int64(rows), np.int64(cols), t(1.0 / rows)),
           shared_mem=threads * z.dtype.itemsize)
    return row_loss.sum(), prob, grad


def _flat_ok(p, g, *state) -> bool:
    """Whether the fused update kernels can run: contiguous arrays of one dtype."""
    return (enabled() and _SUFFIX.get(np.dtype(p.dtype)) is not None and all(
        a.flags.c_contiguous and a.dtype == p.dtype for a in (p, g, *state) if a is not None))


def _launch(name, p, args) -> bool:
    kernel = function(name, p.dtype)
    if kernel is None:
        return False
    kernel(_blocks(p.size), (_THREADS,), args)
    return True


# Optimiser updates: True when the fused kernel ran. Every constant comes from the step's
# dataclass (computed in double) and is rounded once to the array's dtype, as the NumPy
# path does, so both devices use the same values.
def sgd(p, g, velocity, hp) -> bool:
    if not _flat_ok(p, g, velocity):
        return False
    t = _scalar(p.dtype)
    vel = velocity if velocity is not None else p  # not touched when momentum == 0
    return _launch("sgd", p, (p, g, vel, np.int64(p.size), t(hp.lr), t(hp.momentum),
                              t(hp.weight_decay), np.int32(bool(hp.nesterov))))


def adam(p, g, m, v, hp) -> bool:
    if not _flat_ok(p, g, m, v):
        return False
    t = _scalar(p.dtype)
    return _launch("adam", p, (p, g, m, v, np.int64(p.size), t(hp.one_minus_b1),
                               t(hp.one_minus_b2), t(hp.eps_hat), t(hp.step_size),
                               t(hp.weight_decay), t(hp.decay), np.int32(bool(hp.decoupled))))


def rmsprop(p, g, square_avg, velocity, hp) -> bool:
    if not _flat_ok(p, g, square_avg, velocity):
        return False
    t = _scalar(p.dtype)
    vel = velocity if velocity is not None else p  # not touched when momentum == 0
    return _launch("rmsprop", p, (p, g, square_avg, vel, np.int64(p.size), t(hp.lr),
                                  t(hp.alpha), t(hp.one_minus_alpha), t(hp.eps),
                                  t(hp.momentum), t(hp.weight_decay)))


def adagrad(p, g, sum_sq, hp) -> bool:
    if not _flat_ok(p, g, sum_sq):
        return False
    t = _scalar(p.dtype)
    return _launch("adagrad", p, (p, g, sum_sq, np.int64(p.size), t(hp.lr), t(hp.eps),
                                  t(hp.weight_decay)))
