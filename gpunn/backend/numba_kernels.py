"""Fused optimiser updates for the CPU, compiled by Numba when it is installed
(``pip install "gpunn[numba]"``); optional: without Numba the NumPy updates run.

One pass over memory instead of NumPy's twelve for Adam, spread over every core with
``prange``. The constants come from the step's dataclass (computed in double) and are
rounded to the array's dtype first, as the NumPy path does, so both give the same
float32 arithmetic up to the order of operations (parity tests in tests/test_optim.py).
``GPUNN_NUMBA=0`` turns the fast path off.
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

    def adam(p, g, m, v, omb1, omb2, eps_hat, step_size, wd, decay, decoupled):
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
            m[i] = mi
            v[i] = vi
            p[i] = pi - (mi / (np.sqrt(vi) + eps_hat)) * step_size

    # Starting threads costs a few microseconds: small models update on one core.
    return {"adam": njit(parallel=True, cache=True, nogil=True)(adam),
            "adam_serial": njit(cache=True, nogil=True)(adam)}


#: Below this many parameters the single-threaded kernel is faster.
PARALLEL_FROM = 1 << 16


def adam(p, g, m, v, hp) -> bool:
    """Adam/AdamW in one parallel pass; False when it cannot run (then use NumPy)."""
    arrays = (p, g, m, v)
    if not enabled() or p.dtype not in (np.float32, np.float64) or not all(
            a.flags.c_contiguous and a.dtype == p.dtype and a.ndim == 1 for a in arrays):
        return False
    t = p.dtype.type
    kernel = _kernels()["adam" if p.size >= PARALLEL_FROM else "adam_serial"]
    kernel(p, g, m, v, t(hp.one_minus_b1), t(hp.one_minus_b2), t(hp.eps_hat),
           t(hp.step_size), t(hp.weight_decay), t(hp.decay), hp.decoupled)
    return True
