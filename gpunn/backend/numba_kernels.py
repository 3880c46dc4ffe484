"""Fused CPU passes compiled by Numba when it is installed (``pip install
"gpunn[numba]"``); optional: without Numba the NumPy versions run. The optimiser updates,
and three passes of a training step: the bias with ReLU, in place
(:func:`bias_relu`), the softmax cross-entropy head from labels
(:func:`softmax_xent_labels`) and ReLU's derivative with the bias gradient
(:func:`relu_backward_bias`).

One vectorised pass over memory instead of NumPy's twelve for Adam, on one core (a
parallel version over every core with ``prange`` runs where :func:`kernel_for` says).
The constants come from the step's named tuple (computed in double) and are rounded to
the array's dtype first, as the NumPy path does, so both give the same float32
arithmetic up to the order of operations (parity tests in tests/test_optim.py), except
that moments below the smallest normal number are flushed to zero (see the kernel).
``GPUNN_NUMBA=0`` turns the fast path off (read by a NumPy backend at its first Adam
step; the caller checks :func:`enabled`); ``serial`` and ``parallel`` force a kernel.
"""

from __future__ import annotations

import functools
import os

import numpy as np


def setting() -> str:
    """``GPUNN_NUMBA`` as one of ``"0"`` (off), ``"1"`` (on, the kernel chosen by size:
    the default), ``"serial"`` or ``"parallel"`` (one kernel at every size, to measure
    the policy: ``bench/numba_policy.py``); anything else reads as ``"1"``."""
    value = os.environ.get("GPUNN_NUMBA", "1").strip().lower()
    return value if value in ("0", "serial", "parallel") else "1"


def enabled() -> bool:
    """True when Numba imports and ``GPUNN_NUMBA`` does not say 0."""
    return setting() != "0" and _kernels() is not None


@functools.cache
def _kernels():
    try:
        import numba
    except ImportError:
        return None
    njit, prange = numba.njit, numba.prange

    def adam(p, g, m, v, omb1, omb2, eps_hat, step_size, wd, decay, decoupled, tiny):
        # Written so that LLVM vectorises the loop (AVX-512: 16 floats per instruction):
        # no branch in the body but selects, and error_model="numpy" below (Python's
        # model checks every division for zero, which keeps the loop scalar: one
        # element per sqrt and divide, 20x slower than this and slower than NumPy's
        # twelve vectorised passes from 4 k parameters up). The loop-invariant
        # conditions are hoisted out of the loop by the compiler; l2 is the coupled
        # decay or 0.
        l2 = wd - wd if decoupled else wd
        for i in prange(p.size):
            pi = p[i] * decay if decoupled else p[i]
            gi = g[i] + pi * l2 if l2 != 0 else g[i]
            mi = m[i] + omb1 * (gi - m[i])
            vi = v[i] + omb2 * (gi * gi - v[i])
            # A moment whose gradient stays zero (a dead ReLU unit, an unused input)
            # decays into subnormals and never leaves them (m - 0.1 m rounds back to m),
            # and subnormal operands slow the arithmetic down many times. Flushed to
            # zero (in the array's dtype): the step it would have given is below 1e-30.
            mi = mi if abs(mi) >= tiny else mi - mi
            vi = vi if vi >= tiny else vi - vi
            m[i] = mi
            v[i] = vi
            p[i] = pi - (mi / (np.sqrt(vi) + eps_hat)) * step_size

    def softmax_xent(z, target, prob, grad, inv_n):
        # Row by row: max, exponentials and their sum, probabilities and gradient, the
        # label's log-loss, in one pass over a row that stays in cache (NumPy makes a
        # pass over the whole (N, C) array per step, each with its own temporary).
        n, c = z.shape
        total = 0.0
        for i in range(n):
            t = target[i]
            if t < 0 or t >= c:
                return total, False  # NumPy's path raises for this label
            m = z[i, 0]
            for j in range(1, c):
                m = max(m, z[i, j])
            s = z[i, 0] - z[i, 0]
            for j in range(c):
                e = np.exp(z[i, j] - m)
                prob[i, j] = e
                s += e
            inv = 1 / s
            for j in range(c):
                p = prob[i, j] * inv
                prob[i, j] = p
                grad[i, j] = p * inv_n
            grad[i, t] -= inv_n
            total += np.log(s) - (z[i, t] - m)
        return total * inv_n, True

    def relu_backward_bias(g, y, out, db):
        # g * (y > 0) and its column sums in one pass (NumPy: a mask, a product and a
        # reduction, three passes and two temporaries); rows outer, so the inner loop
        # runs along contiguous memory and db's updates vectorise.
        n, c = g.shape
        for j in range(c):
            db[j] = 0
        for i in range(n):
            for j in range(c):
                v = g[i, j] if y[i, j] > 0 else g[i, j] - g[i, j]
                out[i, j] = v
                db[j] += v

    def bias_act(z, b, relu, zero):
        # z += b, then ReLU when asked, in one pass in place (NumPy: the broadcast add
        # and np.maximum, two passes, 4-8x slower). A NaN stays NaN, as np.maximum keeps
        # it; -inf becomes 0 as there.
        n, c = z.shape
        for i in range(n):
            for j in range(c):
                v = z[i, j] + b[j]
                z[i, j] = v if (not relu or v > 0 or v != v) else zero

    options = dict(cache=True, nogil=True, error_model="numpy")
    return {"adam": njit(parallel=True, **options)(adam),
            "adam_serial": njit(**options)(adam),
            "softmax_xent": njit(**options)(softmax_xent),
            "relu_backward_bias": njit(**options)(relu_backward_bias),
            "bias_act": njit(**options)(bias_act)}


#: Smallest normal number per dtype: moments below it are flushed to zero.
_TINY = {np.dtype(np.float32): np.float32(np.finfo(np.float32).tiny),
         np.dtype(np.float64): np.float64(np.finfo(np.float64).tiny)}

#: From this many parameters the default setting runs the parallel kernel: None, never.
#: Measured on 2 cores (bench/results/numba-policy-cpu-2core-2026-12-04.md): the serial
#: kernel is memory-bound from about 1 M parameters (one core nearly saturates the
#: memory bus), the parallel one was slower at every size up to 16.8 M (its second
#: thread waits for a core that BLAS or another process holds, and its threads spin
#: after each region, taking the core from BLAS's next product: the 12x slower tiny fit).
PARALLEL_FROM = None


def adam(p, g, m, v, hp, how: str = "1") -> bool:
    """Adam/AdamW in one pass; False when it cannot run (then use NumPy). Call only when
    :func:`enabled`; ``how`` is :func:`setting`'s value, read once by the caller (not per
    step: an environment read costs a microsecond)."""
    dt = p.dtype
    # Spelled out, not all(... for ...): a generator costs microseconds per small step.
    if not (p.ndim == g.ndim == m.ndim == v.ndim == 1 and dt == g.dtype == m.dtype == v.dtype
            and (dt == np.float32 or dt == np.float64) and p.flags.c_contiguous
            and g.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
        return False
    t = p.dtype.type
    kernel = _kernels()[kernel_for(p.size, how)]
    kernel(p, g, m, v, t(hp.one_minus_b1), t(hp.one_minus_b2), t(hp.eps_hat),
           t(hp.step_size), t(hp.weight_decay), t(hp.decay), hp.decoupled,
           _TINY[dt])
    return True


def kernel_for(size: int, how: str = "1") -> str:
    """The Adam kernel for a flat buffer of ``size`` parameters: ``"adam"`` (parallel)
    or ``"adam_serial"``; ``how`` is :func:`setting`'s value."""
    if how in ("serial", "parallel"):
        return "adam" if how == "parallel" else "adam_serial"
    if PARALLEL_FROM is not None and size >= PARALLEL_FROM:
        return "adam"
    return "adam_serial"


def _float_matrix(a) -> bool:
    return a.ndim == 2 and a.flags.c_contiguous and (a.dtype == np.float32
                                                     or a.dtype == np.float64)


#: Most classes the row-by-row softmax head takes: its exponentials are scalar calls (Numba
#: vectorises exp only with Intel's SVML, not installed with it), NumPy's are vectorised.
#: Measured on 2 cores (bench/numba_policy.py, head table): the kernel takes 0.09x-0.86x
#: NumPy's time up to 24 classes at batches of 64-4096, 0.33x-1.00x at 32, and is slower
#: from 48-64 classes (1.2x-1.75x; 2.2x-2.7x at 1000).
HEAD_MAX_CLASSES = 24


def softmax_xent_labels(z, target):
    """Mean softmax cross-entropy of logits ``z`` (N, C) against integer labels ``target``
    (N,), with the probabilities and ``dvalue/dz``, in one pass per row: ``(value, prob,
    grad)`` as :func:`gpunn.backend.ops.softmax_cross_entropy` gives them, or None where
    the kernel does not apply (then NumPy): more than :data:`HEAD_MAX_CLASSES` classes,
    or a label outside ``[0, C)``, so that NumPy's error is raised. Call only when
    :func:`enabled`."""
    if not (_float_matrix(z) and target.ndim == 1 and target.dtype.kind in "iu"
            and target.shape[0] == z.shape[0] > 0 and 0 < z.shape[1] <= HEAD_MAX_CLASSES):
        return None
    prob, grad = np.empty_like(z), np.empty_like(z)
    t = z.dtype.type
    value, ok = _kernels()["softmax_xent"](z, target, prob, grad, t(1.0 / z.shape[0]))
    return (t(value), prob, grad) if ok else None


def relu_backward_bias(g, y, db):
    """``g * (y > 0)`` (a new array: ``g`` may be shared, e.g. with a residual's skip
    path) with its column sums written into ``db``, in one pass; None where the kernel
    does not apply (then NumPy). Call only when :func:`enabled`."""
    if not (_float_matrix(g) and _float_matrix(y) and g.shape == y.shape
            and g.dtype == y.dtype == db.dtype and db.ndim == 1 and db.flags.c_contiguous
            and db.shape[0] == g.shape[1]):
        return None
    out = np.empty_like(g)
    _kernels()["relu_backward_bias"](g, y, out, db)
    return out


def bias_relu(z, b, relu: bool) -> bool:
    """``z += b`` in place, then ``z = max(z, 0)`` when ``relu``, in one pass; False where
    the kernel does not apply (then NumPy). Call only when :func:`enabled`."""
    if not (_float_matrix(z) and b.ndim == 1 and b.dtype == z.dtype and b.flags.c_contiguous
            and b.shape[0] == z.shape[1]):
        return False
    _kernels()["bias_act"](z, b, relu, z.dtype.type(0))
    return True
