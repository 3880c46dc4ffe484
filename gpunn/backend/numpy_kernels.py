"""In-place NumPy versions of the optimiser updates in :mod:`gpunn.optim`.

Same maths as the generic ``_generic`` methods, but every intermediate goes into the
state arrays or one scratch buffer through ``out=``, so a step allocates at most one
temporary per parameter. ``tests/test_backend_parity.py`` checks them against the
generic versions.
"""

from __future__ import annotations

import numpy as np


def _decay(p, g, hp):
    wd = hp["weight_decay"]
    if wd and not hp.get("decoupled"):
        return g + p * np.asarray(wd, dtype=p.dtype)
    return g


def sgd(p, g, s, hp) -> None:
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


def adam(p, g, s, hp) -> None:
    """Adam / AdamW, in place on ``p``, ``s["m"]`` and ``s["v"]``."""
    t = p.dtype.type
    if hp["weight_decay"] and hp["decoupled"]:
        p *= t(1.0 - hp["lr"] * hp["weight_decay"])
    g = _decay(p, g, hp)
    m, v = s["m"], s["v"]
    m *= t(hp["b1"])
    m += t(1.0 - hp["b1"]) * g
    v *= t(hp["b2"])
    scratch = np.multiply(g, g)
    scratch *= t(1.0 - hp["b2"])
    v += scratch
    np.multiply(v, t(1.0 / hp["c2"]), out=scratch)
    np.sqrt(scratch, out=scratch)
    scratch += t(hp["eps"])
    np.divide(m, scratch, out=scratch)
    scratch *= t(hp["lr"] / hp["c1"])
    p -= scratch


def rmsprop(p, g, s, hp) -> None:
    """RMSprop with optional momentum, in place on ``p`` and ``s``."""
    t = p.dtype.type
    g = _decay(p, g, hp)
    v = s["square_avg"]
    v *= t(hp["alpha"])
    scratch = np.multiply(g, g)
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
