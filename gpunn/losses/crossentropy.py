"""The cross-entropies: binary (sigmoid) and categorical (softmax)."""

from __future__ import annotations

import numbers

from array_api_compat import array_namespace

from ..backend.ops import clip, one_hot, softmax_cross_entropy
from ..backend.ops import match_target as _match_target
from ..backend.ops import upcast_16bit as _upcast
from ..errors import flag
from .base import Loss, LossResult, weigh, weighted_mean


def _check_eps(eps) -> float:
    if not isinstance(eps, numbers.Real) or not 0.0 < eps < 0.5:
        raise ValueError(f"eps: expected a number in (0, 0.5), got {eps!r}")
    return float(eps)


class _CrossEntropy(Loss):
    """What the two cross-entropies share: logits or probabilities, clipping, metrics."""

    default_metrics = ("accuracy",)
    classification = True

    def __init__(self, from_logits: bool = False, eps: float = 1e-7):
        super().__init__()
        self.from_logits = flag(from_logits, f"{type(self).__name__} from_logits")
        self.eps = _check_eps(eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"

    def takes_logits_from(self, activation: str) -> bool:
        # from_logits=True: the model already outputs logits, there is nothing to fuse.
        return not self.from_logits and super().takes_logits_from(activation)

    def config(self) -> dict:
        return {"from_logits": self.from_logits, "eps": self.eps}


class BinaryCrossEntropy(_CrossEntropy):
    """Binary cross-entropy, mean over all elements.

    Parameters
    ----------
    from_logits : bool, default False
        ``pred`` are logits (no sigmoid applied) rather than probabilities.
    eps : float, default 1e-7
        Probabilities are clipped to ``[eps, 1 - eps]`` (probability input only).
    """

    name = "binary_crossentropy"
    takes_step_fusion = True
    logits_of = "sigmoid"

    def prepare_target(self, backend, y, n_outputs, what="y"):
        target = super().prepare_target(backend, y, n_outputs, what)
        # Targets are probabilities whether the model outputs them or logits.
        xp = backend.xp
        lo, hi = float(xp.min(target)), float(xp.max(target))
        if lo < 0 or hi > 1:
            raise ValueError(f"{what}: binary targets must lie in [0, 1], got values "
                             f"from {lo} to {hi}")
        return target

    def compute_logits(self, z, target, backend=None, weight=None):
        xp = backend.xp if backend is not None else array_namespace(z)
        z, restore = _upcast(xp, z)  # then the target in float32 too, for 16-bit logits
        value, grad, prob = self._sigmoid_bce(xp, z, self._target(xp, z, target),
                                              self._shares(xp, weight, z))
        return LossResult(value, restore(grad), prob)

    def _evaluate(self, xp, pred, target, share=None):
        if self.from_logits:
            return self._sigmoid_bce(xp, pred, target, share)
        return super()._evaluate(xp, pred, target, share)

    def _value_and_grad(self, xp, pred, target, share=None):
        if self.from_logits:
            return self._sigmoid_bce(xp, pred, target, share)[:2]
        p = clip(xp, pred, self.eps, 1.0 - self.eps)
        n = pred.size
        value = -weighted_mean(xp, target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p),
                               share)
        return value, weigh(xp, (p - target) / (p * (1.0 - p)) * (1.0 / n), share)

    @staticmethod
    def _sigmoid_bce(xp, z, target, share=None):
        """``(value, dL/dz, sigmoid(z))`` from logits ``z``."""
        # max(z, 0) - z*t + log(1 + exp(-|z|)) never overflows.
        e = xp.exp(-xp.abs(z))
        value = weighted_mean(xp, xp.maximum(z, 0.0) - z * target + xp.log1p(e), share)
        p = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # sigmoid(z)
        return value, weigh(xp, (p - target) * (1.0 / z.size), share), p


class CategoricalCrossEntropy(_CrossEntropy):
    """Categorical cross-entropy, summed over classes and averaged over the batch.

    Targets are integer labels ``(N,)`` or probability rows ``(N, C)`` (one-hot, or
    distributions for label smoothing or distillation).

    Parameters
    ----------
    from_logits : bool, default False
        ``pred`` are logits rather than softmax probabilities.
    eps : float, default 1e-7
        Probabilities are clipped below at ``eps`` (probability input only).
    """

    name = "categorical_crossentropy"
    takes_step_fusion = True
    logits_of = "softmax"

    def prepare_target(self, backend, y, n_outputs, what="y"):
        if n_outputs < 2:
            raise ValueError(f"loss {self.name!r}: needs a last layer with >= 2 outputs (one "
                             f"per class), the model has {n_outputs}; use "
                             "binary_crossentropy for one sigmoid output")
        y = self._as_array(backend, y, what)
        if y.ndim == 2:
            rows = super().prepare_target(backend, y, n_outputs, what)
            # The gradient p - t and the value assume probability rows: anything else
            # (scaled or multi-hot rows, negatives, all zeros) trains silently wrong.
            xp = backend.xp
            sums = xp.sum(rows, axis=1)
            low, lo, hi = float(xp.min(rows)), float(xp.min(sums)), float(xp.max(sums))
            if low < 0 or lo < 1 - 1e-3 or hi > 1 + 1e-3:
                raise ValueError(f"{what}: {self.name} needs one-hot or probability rows "
                                 f"(non-negative, each summing to 1), got values from "
                                 f"{low:g} and row sums from {lo:g} to {hi:g}; pass integer "
                                 "labels, or binary_crossentropy for multi-label targets")
            return rows
        # Integer labels stay labels: shuffling them moves N ints instead of N*C floats,
        # and each batch's one-hot is a cheap comparison (or none, in the CUDA kernel).
        xp = backend.xp
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if backend.is_floating(y.dtype) and not bool(xp.all(y == xp.round(y))):
            raise ValueError(f"{what}: class labels must be integers, got fractional values")
        if lo < 0 or hi >= n_outputs:
            raise ValueError(f"{what}: class labels must lie in [0, {n_outputs}) for a model "
                             f"with {n_outputs} outputs, got labels from {lo} to {hi}")
        return xp.astype(y, xp.int64)

    def _target(self, xp, pred, target):
        if target.ndim == 1 and pred.ndim == 2:
            target = one_hot(xp, target, pred.shape[1], pred.dtype)
        return _match_target(xp, pred, target, self.name)

    def compute_logits(self, z, target, backend=None, weight=None):
        xp = backend.xp if backend is not None else array_namespace(z)
        z, restore = _upcast(xp, z)
        if target.ndim != 1:  # after the upcast: 16-bit logits meet float32 targets
            target = _match_target(xp, z, target, self.name)
        share = self._shares(xp, weight, z)
        # The backend's own version (a faster one on NumPy) knows no weights.
        value, prob, grad = (softmax_cross_entropy(xp, z, target, share)
                             if backend is None or z.dtype != backend.dtype
                             or share is not None
                             else backend.softmax_cross_entropy(z, target))
        return LossResult(value, restore(grad), prob)

    def _evaluate(self, xp, pred, target, share=None):
        if self.from_logits:
            value, prob, grad = softmax_cross_entropy(xp, pred, target, share)
            return value, grad, prob
        return super()._evaluate(xp, pred, target, share)

    def _value_and_grad(self, xp, pred, target, share=None):
        if self.from_logits:
            value, _, grad = softmax_cross_entropy(xp, pred, target, share)
            return value, grad
        n = pred.shape[0]
        p = clip(xp, pred, self.eps, 1.0)
        # Summed over classes (one row's loss), averaged over rows.
        value = (-xp.sum(target * xp.log(p)) * (1.0 / n) if share is None
                 else -xp.sum(share * xp.sum(target * xp.log(p), axis=1)))
        return value, weigh(xp, -target / p * (1.0 / n), share)
