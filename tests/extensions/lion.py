"""Lion, an optimiser added to gpunn from outside the package: this one file, the public
API only (a subclass of :class:`gpunn.optim.Optimizer`, registered by name).

Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") keeps one moment
per parameter and steps by the sign of an interpolation of moment and gradient::

    c = b1 m + (1 - b1) g
    p -= lr (sign(c) + wd p)
    m = b2 m + (1 - b2) g

Importing this module registers it: ``gn.optim.get("lion")``, ``fit(optimizer="lion")``,
the CLI's ``--optimizer lion``, and model files saved with it load back with it.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import gpunn as gn


class LionStep(NamedTuple):
    """One step's constants, computed in double precision on the host (``1 - beta``
    rounded once to the arrays' dtype, not computed in it)."""

    lr: float
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    weight_decay: float


@gn.optim.register("lion")
class Lion(gn.optim.Optimizer):
    """Lion: the sign of an interpolated moment, decoupled weight decay.

    Parameters
    ----------
    lr : float, default 1e-4
        Every coordinate moves by ``lr`` per step: take it 3-10 times smaller than
        Adam's.
    betas : (float, float), default (0.9, 0.99)
        Interpolation of the step direction (``beta1``) and decay of the moment
        (``beta2``), each in [0, 1).
    weight_decay : float, default 0
        Decoupled: ``p -= lr * weight_decay * p``.
    clip_norm : float, optional
    """

    state_keys = ("m",)

    def __init__(self, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0,
                 clip_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_norm)
        ok = isinstance(betas, (tuple, list)) and len(betas) == 2 and all(
            isinstance(b, numbers.Real) and not isinstance(b, bool) and 0.0 <= b < 1.0
            for b in betas)
        if not ok:
            raise ValueError(f"Lion betas: expected a pair (beta1, beta2) of numbers in "
                             f"[0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))

    def hyper(self) -> dict:
        return {**super().hyper(), "betas": list(self.betas)}

    def step_constants(self) -> LionStep:
        b1, b2 = self.betas
        return LionStep(self.lr, b1, 1.0 - b1, b2, 1.0 - b2, self.weight_decay)

    def update(self, xp, p, g, state, hp) -> None:
        m = state["m"]
        c = hp.beta1 * m + hp.one_minus_beta1 * g
        p[...] = p - hp.lr * (xp.sign(c) + hp.weight_decay * p)
        m[...] = hp.beta2 * m + hp.one_minus_beta2 * g
