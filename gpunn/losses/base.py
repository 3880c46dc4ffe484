"""The loss contract: :class:`Loss` (value, gradient and scored output of a batch) and
what every loss shares (target checks, the logits form, the fused head)."""

from __future__ import annotations

from typing import NamedTuple

from array_api_compat import array_namespace

from ..backend.ops import match_target as _match_target
from ..backend.ops import require_finite
from ..backend.ops import upcast_16bit as _upcast
from ..errors import describe


class LossResult(NamedTuple):
    """What one loss evaluation returns.

    Attributes
    ----------
    value : 0-d array
        The loss, on the device of the prediction.
    grad : (batch, outputs)
        ``dL/dpred``; ``dL/dz`` from :meth:`Loss.compute_logits`.
    output : (batch, outputs)
        The activated model output (probabilities from logits), what metrics score.
    """

    value: object
    grad: object
    output: object


def weighted_mean(xp, terms, share):
    """A loss from its per-element terms ``(batch, outputs)``: their mean, or with row
    shares ``share (batch,)`` (weights over their sum) the shares' sum of row means."""
    if share is None:
        return xp.mean(terms)
    return xp.sum(share * (xp.sum(terms, axis=1) / terms.shape[1]))


def weigh(xp, grad, share):
    """The gradient ``(batch, outputs)`` of the unweighted (mean over rows) loss turned
    into that of the weighted one: each row's times the batch size times its share."""
    if share is None:
        return grad
    return grad * xp.reshape(share * grad.shape[0], (-1, 1))


class Loss:
    """Base class. Subclasses define ``_value_and_grad(xp, pred, target, share=None)``:
    the value and ``dL/dpred``, with rows weighted by ``share`` when given (see
    :meth:`compute`; :func:`weighted_mean` and :func:`weigh` do it for losses that are
    means over elements).

    Attributes
    ----------
    name : str
    logits_of : str or None
        The output activation whose pre-activation :meth:`forward_logits` accepts.
    default_metrics : tuple of str
        What ``fit`` reports when no metrics are asked for.
    takes_step_fusion : bool
        A fused kernel computes exactly this class's loss (read from the class, not bases).
    classification : bool
        Targets are classes (``fit``'s ``class_weight`` applies).
    output : array or None
        The (activated) model output of the last :meth:`forward` (hand-written loops;
        :meth:`compute` leaves it alone).
    """

    name = "loss"
    logits_of: str | None = None
    default_metrics: tuple = ("mae",)
    takes_step_fusion = False
    classification = False

    def __init__(self):
        self._last = None  # the last forward's LossResult, for backward (and only that)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def takes_logits_from(self, activation: str) -> bool:
        """True when the model may stop before ``activation`` and call
        :meth:`forward_logits` (the activation is then applied inside the loss)."""
        return self.logits_of is not None and activation == self.logits_of

    def prepare_target(self, backend, y, n_outputs: int, what: str = "y"):
        """Check a dataset's targets ``y`` ((N,) or (N, n_outputs)) and bring them into
        the form this loss compares against, on ``backend`` (the model's, or the host one
        when streaming), before training starts: an (N, n_outputs) float array
        (subclasses may keep labels). Errors (ValueError, TypeError) name ``what``
        (``"y"``, ``"val_y"``), what was expected and what was given."""
        given = y
        y = self._as_array(backend, y, what)
        if not backend.is_floating(y.dtype):
            y = backend.xp.astype(y, backend.dtype)
            require_finite(backend.xp, y, what, given)  # 10**6 is Inf in float16
        return self._as_matrix(backend, y, n_outputs, what)

    def _as_array(self, backend, y, what: str):
        """``y`` on ``backend``, 1-D or 2-D, finite."""
        given = y
        try:
            y = backend.asarray(y)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}: expected a numeric array, got {describe(y)} ({exc})") \
                from None
        if y.ndim not in (1, 2):
            raise ValueError(f"{what}: expected a 1-D or 2-D array of targets, got "
                             f"{describe(y)}")
        if backend.is_floating(y.dtype):
            require_finite(backend.xp, y, what, given)
        return y

    def _as_matrix(self, backend, y, n_outputs: int, what: str):
        xp = backend.xp
        if y.ndim == 1 and n_outputs == 1:
            y = xp.reshape(y, (-1, 1))
        if y.ndim != 2 or y.shape[1] != n_outputs:
            labels = n_outputs == 1 or self.logits_of == "softmax"  # (N,) accepted
            shapes = f"(N,) or (N, {n_outputs})" if labels else f"(N, {n_outputs})"
            hint = ("; for class labels use categorical_crossentropy"
                    if y.ndim == 1 and not labels else "")
            raise ValueError(f"{what}: expected targets of shape {shapes} for {self.name} "
                             f"with {n_outputs} output(s), got {describe(y)}{hint}")
        if y.dtype != backend.dtype and backend.is_floating(y.dtype):
            y = xp.astype(y, backend.dtype)
        return y

    @property
    def output(self):
        return None if self._last is None else self._last.output

    def compute(self, pred, target, backend=None, weight=None) -> LossResult:
        """Value, gradient and scored output; the loss object is left unchanged.

        Parameters
        ----------
        pred : (batch, outputs)
        target : (batch, outputs), or (batch,) where the loss allows it
        backend : Backend, optional
            The model's (spares looking the namespace up; the training loop passes it).
        weight : (batch,), optional
            Sample weights ``w >= 0``: the value is then ``sum(w_i l_i) / sum(w_i)`` over
            the per-row losses ``l_i`` (what the unweighted loss averages: MSE's mean over
            outputs), as scikit-learn weighs; 0 (and a zero gradient) when all are 0.

        Returns
        -------
        LossResult
            On the device of ``pred``; ``grad`` is ``dL/dpred``.
        """
        xp = backend.xp if backend is not None else array_namespace(pred)
        pred, restore = _upcast(xp, pred)
        target = self._target(xp, pred, target)
        value, grad, output = self._evaluate(xp, pred, target, self._shares(xp, weight, pred))
        return LossResult(value, restore(grad), output)

    def compute_logits(self, z, target, backend=None, weight=None) -> LossResult:
        """:meth:`compute` from the output layer's pre-activation ``z`` (see
        ``logits_of``): ``grad`` is ``dL/dz`` and ``output`` the activated output.
        ``backend`` (the model's) lets its faster version of the maths run."""
        raise TypeError(f"{self.name} has no logits form")

    def _shares(self, xp, weight, like):
        """Each row's share of the batch loss, ``weight / sum(weight)`` in ``like``'s
        dtype (all zero for all-zero weights: such a batch counts for nothing); None
        without weights."""
        if weight is None:
            return None
        if tuple(weight.shape) != (like.shape[0],):
            raise ValueError(f"{self.name}: weight: expected shape ({like.shape[0]},), one "
                             f"per row of the prediction, got {describe(weight)}")
        if weight.dtype != like.dtype:
            weight = xp.astype(weight, like.dtype)
        total = xp.sum(weight)
        return weight / xp.where(total > 0, total, xp.ones_like(total))

    def forward(self, pred, target, backend=None):
        """Loss value (:meth:`compute`), kept for :meth:`backward`.

        Returns
        -------
        0-d array on the device of ``pred``.
        """
        self._last = self.compute(pred, target, backend)
        return self._last.value

    def forward_logits(self, z, target, backend=None):
        """Loss value from the pre-activation ``z`` (:meth:`compute_logits`); after it,
        :meth:`backward` returns ``dL/dz`` and ``output`` holds the activated output."""
        self._last = self.compute_logits(z, target, backend)
        return self._last.value

    def backward(self):
        """``dL/dpred`` (or ``dL/dz``) from the last :meth:`forward`, shape of ``pred``."""
        if self._last is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        return self._last.grad

    def _target(self, xp, pred, target):
        return _match_target(xp, pred, target, self.name)

    def _evaluate(self, xp, pred, target, share=None):
        """``(value, grad, output)``; the output metrics score is ``pred`` itself unless
        the loss applies an activation (``from_logits``)."""
        # Unweighted, the hook is called as it always was (a subclass may take 3 args).
        value, grad = (self._value_and_grad(xp, pred, target) if share is None
                       else self._value_and_grad(xp, pred, target, share))
        return value, grad, pred

    def _value_and_grad(self, xp, pred, target, share=None):
        raise NotImplementedError

    def config(self) -> dict:
        return {}
