"""Losses of regression: mean squared error, mean absolute error, Huber."""

from __future__ import annotations

import numbers

from ..backend.ops import clip, sign
from .base import Loss, weigh, weighted_mean


class MeanSquaredError(Loss):
    """``mean((pred - target) ** 2)`` over all elements (PyTorch/Keras definition)."""

    name = "mse"
    logits_of = "identity"  # no activation to fuse, but the step's head can be one launch
    takes_step_fusion = True

    def compute_logits(self, z, target, backend=None, weight=None):
        return self.compute(z, target, backend, weight)

    def _value_and_grad(self, xp, pred, target, share=None):
        diff = pred - target
        return weighted_mean(xp, diff * diff, share), weigh(xp, diff * (2.0 / diff.size),
                                                             share)


class MeanAbsoluteError(Loss):
    """``mean(abs(pred - target))`` over all elements; subgradient 0 at equality."""

    name = "mae"

    def _value_and_grad(self, xp, pred, target, share=None):
        diff = pred - target
        return weighted_mean(xp, xp.abs(diff), share), weigh(
            xp, sign(xp, diff) * (1.0 / diff.size), share)


class Huber(Loss):
    """Huber loss, mean over all elements: quadratic within ``delta`` of the target and
    linear beyond (robust to outliers): ``0.5 d^2`` for ``|d| <= delta``, else
    ``delta (|d| - 0.5 delta)``; PyTorch's ``HuberLoss`` and Keras' ``Huber``.

    Parameters
    ----------
    delta : float > 0, default 1.0
    """

    name = "huber"

    def __init__(self, delta: float = 1.0):
        super().__init__()
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or \
                not 0.0 < delta < float("inf"):
            raise ValueError(f"Huber delta: expected a positive number, got {delta!r}")
        self.delta = float(delta)

    def __repr__(self) -> str:
        return f"Huber(delta={self.delta})"

    def _value_and_grad(self, xp, pred, target, share=None):
        diff = pred - target
        # clip(d, -delta, delta) is d inside the band and +-delta outside: it is both the
        # gradient and, through 0.5 c^2 + delta (|d| - |c|), the value.
        c = clip(xp, diff, -self.delta, self.delta)
        value = weighted_mean(xp, 0.5 * (c * c) + self.delta * (xp.abs(diff) - xp.abs(c)),
                              share)
        return value, weigh(xp, c * (1.0 / diff.size), share)

    def config(self) -> dict:
        return {"delta": self.delta}
