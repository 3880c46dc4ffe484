"""Constants of one optimiser step: what a rule's generic update and a backend's fast
version of it both read.

An update rule (gpunn.optim.rules) builds one of these per step from its settings and step
count (an immutable named tuple: a frozen dataclass costs microseconds to build per step)
and hands it to its own generic update or to the fast path a backend registered for the
rule's kind (NumPy in place, Numba, one fused CUDA kernel). They live here, beside the fast
paths that read them, because the backend imports nothing from gpunn.optim. Every derived
constant (``1 - beta2``, the folded bias corrections, ``1 - lr * weight_decay``) is
computed here once, in double precision, so the generic, NumPy and CUDA paths round the
same values.
"""

from __future__ import annotations

from typing import NamedTuple


class SGDStep(NamedTuple):
    """``v = momentum v + g``; ``p -= lr (g + momentum v if nesterov else v)``; ``g``
    includes ``weight_decay * p``."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    step: int = 1  # the step number, counted from 1 (for periodic housekeeping)


class AdamStep(NamedTuple):
    """Adam/AdamW with the bias corrections folded into ``step_size`` and ``eps_hat``:
    ``m += (1-b1)(g - m)``, ``v += (1-b2)(g^2 - v)``,
    ``p -= step_size * m / (sqrt(v) + eps_hat)``; decoupled decay multiplies ``p`` by
    ``decay`` first, coupled decay adds ``weight_decay * p`` to ``g``."""

    one_minus_b1: float
    one_minus_b2: float
    eps_hat: float
    step_size: float
    weight_decay: float = 0.0
    decay: float = 1.0
    decoupled: bool = False
    step: int = 1

    @classmethod
    def at(cls, t: int, lr: float, betas, eps: float, weight_decay: float = 0.0,
           decoupled: bool = False) -> AdamStep:
        """The step constants for step number ``t`` (counted from 1)."""
        b1, b2 = betas
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        root_c2 = c2 ** 0.5
        # lr * (m / c1) / (sqrt(v / c2) + eps) == (lr sqrt(c2) / c1) m / (sqrt(v) + eps sqrt(c2))
        return cls(1.0 - b1, 1.0 - b2, eps * root_c2, lr * root_c2 / c1, weight_decay,
                   1.0 - lr * weight_decay, decoupled, t)


class RMSpropStep(NamedTuple):
    """``s = alpha s + (1-alpha) g^2``; ``u = g / (sqrt(s) + eps)``, with momentum
    ``v = momentum v + u``; ``p -= lr u`` (or ``lr v``)."""

    lr: float
    alpha: float
    one_minus_alpha: float
    eps: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    step: int = 1


class AdagradStep(NamedTuple):
    """``s += g^2``; ``p -= lr g / (sqrt(s) + eps)`` (``lr`` already decayed for this
    step)."""

    lr: float
    eps: float
    weight_decay: float = 0.0
