"""Fused optimiser updates for the CPU, compiled by Numba when it is installed
(``pip install "gpunn[numba]"``); optional: without Numba the NumPy updates run.

One pass over memory instead of NumPy's twelve for Adam, spread over every core with
``prange``. The constants come from the step's named tuple (computed in double) and are
rounded to the array's dtype first, as the NumPy path does, so both give the same
float32 arithmetic up to the order of operations (parity tests in tests/test_optim.py),
except that moments below the smallest normal number are flushed to zero (see the kernel).
``GPUNN_NUMBA=0`` turns the fast path off (read by a NumPy backend at its first Adam
step; the caller checks :func:`enabled`).
"""

from __future__ import annotations

import functools
import os

import numpy as np


def enabled() -> bool:
    """True when Numba imports and ``GPUNN_NUMBA`` does not say 0."""
    return os.environ.get("GPUNN_NUMBA", "1") != "0" and _kernels() is not None


@functools.cache
def _kernels():
    try:
        import numba
    except ImportError:
        return None
    njit, prange = numba.njit, numba.prange

    def adam(p, g, m, v, omb1, omb2, eps_hat, step_size, wd, decay, decoupled, tiny):
        for i in prange(p.size):
            pi = p[i]
            gi = g[i]
            if wd != 0:
                if decoupled:
                    pi *= decay
                else:
                    gi += pi * wd
            mi = m[i] + omb1 * (gi - m[i])
            vi = v[i] + omb2 * (gi * gi - v[i])
            # A moment whose gradient stays zero (a dead ReLU unit, an unused input)
            # decays into subnormals and never leaves them (m - 0.1 m rounds back to m),
            # and a subnormal operand makes this scalar loop's division ~60x slower.
            # Flushed to zero: the step it would have given is below 1e-30.
            if -tiny < mi < tiny:
                mi -= mi  # zero in the array's dtype
            if vi < tiny:
                vi -= vi
            m[i] = mi
            v[i] = vi
            p[i] = pi - (mi / (np.sqrt(vi) + eps_hat)) * step_size

    # Starting threads costs a few microseconds: small models update on one core.
    return {"adam": njit(parallel=True, cache=True, nogil=True)(adam),
            "adam_serial": njit(cache=True, nogil=True)(adam)}


#: Smallest normal number per dtype: moments below it are flushed to zero.
_TINY = {np.dtype(np.float32): np.float32(np.finfo(np.float32).tiny),
         np.dtype(np.float64): np.float64(np.finfo(np.float64).tiny)}

#: Below this many parameters the single-threaded kernel is faster.
PARALLEL_FROM = 1 << 16


def adam(p, g, m, v, hp) -> bool:
    """Adam/AdamW in one parallel pass; False when it cannot run (then use NumPy). Call
    only when :func:`enabled`."""
    dt = p.dtype
    # Spelled out, not all(... for ...): a generator costs microseconds per small step.
    if not (p.ndim == g.ndim == m.ndim == v.ndim == 1 and dt == g.dtype == m.dtype == v.dtype
            and (dt == np.float32 or dt == np.float64) and p.flags.c_contiguous
            and g.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
        return False
    t = p.dtype.type
    kernel = _kernels()["adam" if p.size >= PARALLEL_FROM else "adam_serial"]
    kernel(p, g, m, v, t(hp.one_minus_b1), t(hp.one_minus_b2), t(hp.eps_hat),
           t(hp.step_size), t(hp.weight_decay), t(hp.decay), hp.decoupled,
           _TINY[dt])
    return True
