"""scikit-learn's MLP losses and output links, written once against the Array API.

Every loss pairs with its output activation through the canonical link, so the gradient
with respect to the last pre-activation ``z`` is ``p - y`` (times the sample weight, over
the summed weights): ``softmax`` + log-loss, ``logistic`` + binary log-loss (summed over
labels in the multilabel case), ``identity`` + half squared error (averaged over outputs),
``exp`` + half Poisson deviance.
"""

from __future__ import annotations

from ..activations import ACTIVATIONS as _ACTIVATIONS
from ..backend.ops import clip

_LINKS = {"softmax": "softmax", "logistic": "sigmoid"}


def link(xp, out_activation: str, z):
    """The output activation of ``z (n, outputs)``."""
    if out_activation in _LINKS:
        return _ACTIVATIONS[_LINKS[out_activation]].forward(xp, z)
    if out_activation == "exp":
        return xp.exp(z)
    return z


def _weighted_sum(xp, per_sample, w):
    return xp.sum(per_sample) if w is None else xp.sum(per_sample * w)


def value(xp, name: str, y, p, z, w, sw):
    """The batch loss as scikit-learn defines it (0-d array).

    Parameters
    ----------
    name : {"log_loss", "binary_log_loss", "squared_error", "poisson"}
    y, p, z : (n, outputs)
        Targets (0/1 indicators for classifiers), outputs and pre-activations.
    w : (n,) or None
    sw : float or 0-d array
        ``n``, or the sum of ``w``.
    """
    eps = float(xp.finfo(p.dtype).eps)
    if name == "squared_error":
        return 0.5 * _weighted_sum(xp, xp.mean((y - p) ** 2, axis=1), w) / sw
    if name == "poisson":
        # y log(y / p) - y + p, with 0 log 0 = 0 and log p = z (no overflow in the log).
        safe = xp.where(y > 0, y, xp.ones_like(y))
        dev = xp.where(y > 0, y * (xp.log(safe) - z), xp.zeros_like(y)) - y + p
        return _weighted_sum(xp, xp.sum(dev, axis=1), w) / sw
    q = clip(xp, p, eps, 1.0 - eps)
    if name == "binary_log_loss":
        per = -xp.sum(y * xp.log(q) + (1.0 - y) * xp.log(1.0 - q), axis=1)
    else:
        per = -xp.sum(y * xp.log(q), axis=1)
    return _weighted_sum(xp, per, w) / sw
