"""scikit-learn's MLP losses and output links, written once against the Array API, and
:class:`ScikitLearnLoss`: them as a gpunn loss, what the core training loop minimises for
the estimators.

Every loss pairs with its output activation through the canonical link, so the gradient
with respect to the last pre-activation ``z`` is ``p - y`` (times the sample weight, over
the summed weights): ``softmax`` + log-loss, ``logistic`` + binary log-loss (summed over
labels in the multilabel case), ``identity`` + half squared error (averaged over outputs),
``exp`` + half Poisson deviance.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from ..activations import ACTIVATIONS as _ACTIVATIONS
from ..backend.ops import clip
from ..losses import Loss, LossResult

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


class ScikitLearnLoss(Loss):
    """A scikit-learn MLP's loss of one batch, and its L2 term, as a gpunn loss.

    It takes the output layer's pre-activation ``z`` (its logits form: the model stops
    before the output activation, which the loss applies as the link) and returns
    scikit-learn's value and ``dL/dz = (p - y) w / sum(w)``: the gradient scikit-learn
    backpropagates (for several regression outputs not the exact gradient of the mean
    over outputs it reports, which is scikit-learn's choice, kept). With sample weights
    the value is ``sum(w l) / sum(w)``, as gpunn's losses weigh; a batch whose weights are
    all zero counts for nothing. With ``penalty`` the value includes the L2 term of the
    batch in progress (:class:`gpunn.sklearn._training.L2Penalty`).

    Parameters
    ----------
    name : {"log_loss", "binary_log_loss", "squared_error", "poisson"}
    out_activation : {"softmax", "logistic", "identity", "exp"}
        scikit-learn's output activation (the link).
    logits_of : str
        The activation of the network's output layer, which the loss applies itself.
    penalty : L2Penalty, optional
    """

    default_metrics = ()

    def __init__(self, name: str, out_activation: str, logits_of: str, penalty=None):
        super().__init__()
        self.name, self.out_activation, self.penalty = name, out_activation, penalty
        self.logits_of = logits_of

    def __repr__(self) -> str:
        return f"ScikitLearnLoss({self.name!r}, {self.out_activation!r})"

    def compute_logits(self, z, target, backend=None, weight=None) -> LossResult:
        """Value, ``dL/dz`` and the activated output of ``z (batch, outputs)`` against
        ``target (batch, outputs)``, rows weighted by ``weight (batch,)`` or None."""
        xp = backend.xp if backend is not None else array_namespace(z)
        p = link(xp, self.out_activation, z)
        delta = p - target  # the canonical link: d loss / d z
        if weight is None:
            sw = float(z.shape[0])
        else:
            weight = xp.astype(weight, z.dtype) if weight.dtype != z.dtype else weight
            total = xp.sum(weight)
            sw = xp.where(total > 0, total, xp.ones_like(total))
            delta = delta * xp.reshape(weight, (-1, 1))
        loss = value(xp, self.name, target, p, z, weight, sw)
        if self.penalty is not None:
            loss = loss + self.penalty.value(xp)
        return LossResult(loss, delta / sw, p)

    def compute(self, pred, target, backend=None, weight=None) -> LossResult:
        raise TypeError(f"{self!r} takes the output layer's pre-activation: use "
                        "compute_logits")
