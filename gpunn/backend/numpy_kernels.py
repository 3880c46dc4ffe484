"""In-place NumPy versions of the optimiser updates in :mod:`gpunn.optim`.

Same maths as the generic ``_generic`` methods, but every intermediate goes into the
state arrays or one scratch buffer through ``out=``. ``scratch(like)`` returns a reusable
work array (the backend caches one per shape), so a steady-state step allocates nothing
unless weight decay needs ``g + wd * p``. ``tests/test_backend_parity.py`` checks them against the
generic versions.
"""

from __future__ import annotations

import numpy as np


def _work(scratch, p):
    """A scratch array like ``p``: from the backend's cache when one is given."""
    return scratch(p) if scratch is not None else np.empty_like(p)


def _decay(p, g, hp):
    wd = hp["weight_decay"]
    if wd and not hp.get("decoupled"):
        return g + p * np.asarray(wd, dtype=p.dtype)
    return g


def sgd(p, g, s, hp, scratch=None) -> None:
    """SGD with momentum/Nesterov, in place on ``p`` and ``s``."""
    g = _decay(p, g, hp)
    mu = hp["momentum"]
    if mu:
        v = s["velocity"]
        v *= p.dtype.type(mu)
        v += g
        if hp["nesterov"]:
            g = g + p.dtype.type(mu) * v
        else:
            g = v
    p -= p.dtype.type(hp["lr"]) * g


def adam(p, g, s, hp, scratch=None) -> None:
    """Adam / AdamW, in place on ``p``, ``s["m"]`` and ``s["v"]``.

    Written as ``m += (1-b1) (g - m)`` and ``v += (1-b2) (g^2 - v)``, with the bias
    corrections folded into one step size and epsilon, so each parameter costs 12 passes
    over memory and one scratch array.
    """
    t = p.dtype.type
    if hp["weight_decay"] and hp["decoupled"]:
        p *= t(1.0 - hp["lr"] * hp["weight_decay"])
    g = _decay(p, g, hp)
    m, v = s["m"], s["v"]
    scratch = np.subtract(g, m, out=_work(scratch, p))
    scratch *= t(1.0 - hp["b1"])
    m += scratch
    np.multiply(g, g, out=scratch)
    scratch -= v
    scratch *= t(1.0 - hp["b2"])
    v += scratch
    # lr * (m / c1) / (sqrt(v / c2) + eps) == (lr sqrt(c2) / c1) * m / (sqrt(v) + eps sqrt(c2))
    root_c2 = hp["c2"] ** 0.5
    np.sqrt(v, out=scratch)
    scratch += t(hp["eps"] * root_c2)
    np.divide(m, scratch, out=scratch)
    scratch *= t(hp["lr"] * root_c2 / hp["c1"])
    p -= scratch


def rmsprop(p, g, s, hp, scratch=None) -> None:
    """RMSprop with optional momentum, in place on ``p`` and ``s``."""
    t = p.dtype.type
    g = _decay(p, g, hp)
    v = s["square_avg"]
    v *= t(hp["alpha"])
    scratch = np.multiply(g, g, out=_work(scratch, p))
    scratch *= t(1.0 - hp["alpha"])
    v += scratch
    np.sqrt(v, out=scratch)
    scratch += t(hp["eps"])
    np.divide(g, scratch, out=scratch)
    if hp["momentum"]:
        vel = s["velocity"]
        vel *= t(hp["momentum"])
        vel += scratch
        scratch = vel
    p -= t(hp["lr"]) * scratch


KERNELS = {"sgd": sgd, "adam": adam, "rmsprop": rmsprop}
