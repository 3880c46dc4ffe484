"""In-place NumPy versions of the optimiser updates (the NumPy backend's fast paths).

Same maths as the rules' generic updates (:mod:`gpunn.optim.rules`), but every
intermediate goes into the state arrays or one scratch buffer through ``out=``.
``scratch(like)`` returns a reusable work array (the backend caches one per shape), so a
steady-state step allocates nothing unless weight decay needs ``g + wd * p``.
``tests/test_optim.py`` checks them against the generic versions (every registered fast
path, every dtype it is registered for).
"""

from __future__ import annotations

import numpy as np


def _decay(p, g, wd: float, coupled: bool = True):
    """``g + wd * p`` (a new array) when coupled weight decay applies, else ``g``."""
    if wd and coupled:
        return g + p * np.asarray(wd, dtype=p.dtype)
    return g


#: How often (in steps) decaying optimiser state is cleared of subnormal numbers.
FLUSH_EVERY = 32


def _flush_subnormals(step: int, work, *arrays) -> None:
    """Every ``FLUSH_EVERY`` steps, set entries of ``arrays`` below the smallest normal
    number to zero.

    A moment whose gradient stays zero (a dead ReLU unit, an unused input) decays into
    subnormals and stays there (``0.9 m`` rounds back to ``m``); NumPy's multiply and
    divide then run 10-40x slower on those entries. Once zero, such an entry stays zero.
    The update it would have given is below 1e-30.
    """
    if step % FLUSH_EVERY:
        return
    tiny = np.finfo(work.dtype).tiny
    for a in arrays:
        if a is not None:
            np.copyto(a, 0, where=np.less(np.abs(a, out=work), tiny))


def _over_root(num, acc, eps, work):
    """``num / (sqrt(acc) + eps)`` into ``work`` (three in-place passes); returns it."""
    np.sqrt(acc, out=work)
    work += eps
    return np.divide(num, work, out=work)


def sgd(p, g, velocity, hp, scratch) -> None:
    """SGD with momentum/Nesterov, in place on ``p`` and ``velocity``."""
    g = _decay(p, g, hp.weight_decay)
    mu = hp.momentum
    if mu:
        _flush_subnormals(hp.step, scratch(p), velocity)
        velocity *= p.dtype.type(mu)
        velocity += g
        g = g + p.dtype.type(mu) * velocity if hp.nesterov else velocity
    p -= p.dtype.type(hp.lr) * g


def adam(p, g, m, v, hp, scratch) -> None:
    """Adam / AdamW, in place on ``p``, ``m`` and ``v``: 12 passes over memory and one
    scratch array (``m += (1-b1) (g - m)``, ``v += (1-b2) (g^2 - v)``, folded bias
    corrections)."""
    t = p.dtype.type
    if hp.weight_decay and hp.decoupled:
        p *= t(hp.decay)
    g = _decay(p, g, hp.weight_decay, not hp.decoupled)
    _flush_subnormals(hp.step, scratch(p), m, v)
    work = np.subtract(g, m, out=scratch(p))
    work *= t(hp.one_minus_b1)
    m += work
    np.multiply(g, g, out=work)
    work -= v
    work *= t(hp.one_minus_b2)
    v += work
    _over_root(m, v, t(hp.eps_hat), work)
    work *= t(hp.step_size)
    p -= work


def rmsprop(p, g, square_avg, velocity, hp, scratch) -> None:
    """RMSprop with optional momentum, in place on ``p``, ``square_avg``, ``velocity``."""
    t = p.dtype.type
    g = _decay(p, g, hp.weight_decay)
    _flush_subnormals(hp.step, scratch(p), square_avg, velocity)
    square_avg *= t(hp.alpha)
    work = np.multiply(g, g, out=scratch(p))
    work *= t(hp.one_minus_alpha)
    square_avg += work
    _over_root(g, square_avg, t(hp.eps), work)
    if hp.momentum:
        velocity *= t(hp.momentum)
        velocity += work
        work = velocity
    p -= t(hp.lr) * work


def adagrad(p, g, sum_sq, hp, scratch) -> None:
    """Adagrad, in place on ``p`` and ``sum_sq``."""
    t = p.dtype.type
    g = _decay(p, g, hp.weight_decay)
    work = np.multiply(g, g, out=scratch(p))
    sum_sq += work
    _over_root(g, sum_sq, t(hp.eps), work)
    work *= t(hp.lr)
    p -= work
