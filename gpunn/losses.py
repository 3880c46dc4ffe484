"""Losses: value and gradient with respect to the model output, and what is specific to
each loss: its targets (``prepare_target`` checks them), default metrics and logits form.

``loss.forward(pred, target)`` returns the value as a 0-d array on the device (no host
sync); ``loss.backward()`` returns ``dL/dpred`` of ``pred``'s shape. A loss whose
``logits_of`` names the output layer's activation (softmax or sigmoid for the
cross-entropies) also offers ``forward_logits(z, target)`` on that layer's pre-activation
``z``, and ``backward()`` is then ``dL/dz``: faster, and stable where ``log(softmax)``
would underflow. A new loss is a class here, named in ``LOSSES``."""

from __future__ import annotations

import numbers

from array_api_compat import array_namespace

from .backend.ops import all_finite, clip, one_hot, sign, softmax_cross_entropy
from .backend.ops import match_target as _match_target
from .backend.ops import upcast_16bit as _upcast
from .errors import describe, flag, lookup


class Loss:
    """Base class. Subclasses define ``_value_and_grad(xp, pred, target)``.

    Attributes
    ----------
    name : str
    logits_of : str or None
        The output activation whose pre-activation :meth:`forward_logits` accepts.
    default_metrics : tuple of str
        What ``fit`` reports when no metrics are asked for.
    takes_step_fusion : bool
        A fused kernel computes exactly this class's loss (read from the class, not bases).
    output : array
        The (activated) model output of the last forward, for metrics.
    """

    name = "loss"
    logits_of: str | None = None
    default_metrics: tuple = ("mae",)
    takes_step_fusion = False

    def __init__(self):
        self._grad = None
        self.output = None

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
        y = self._as_array(backend, y, what)
        if not backend.is_floating(y.dtype):
            y = backend.xp.astype(y, backend.dtype)
        return self._as_matrix(backend, y, n_outputs, what)

    def _as_array(self, backend, y, what: str):
        """``y`` on ``backend``, 1-D or 2-D, finite."""
        try:
            y = backend.asarray(y)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}: expected a numeric array, got {describe(y)} ({exc})") \
                from None
        if y.ndim not in (1, 2):
            raise ValueError(f"{what}: expected a 1-D or 2-D array of targets, got "
                             f"{describe(y)}")
        if backend.is_floating(y.dtype) and not all_finite(backend.xp, y):
            raise ValueError(f"{what}: contains NaN or Inf")
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

    def forward(self, pred, target, backend=None):
        """Loss value.

        Parameters
        ----------
        pred : (batch, outputs)
        target : (batch, outputs), or (batch,) where the loss allows it
        backend : Backend, optional
            The model's (spares looking the namespace up; the training loop passes it).

        Returns
        -------
        0-d array on the device of ``pred``.
        """
        xp = backend.xp if backend is not None else array_namespace(pred)
        pred, restore = _upcast(xp, pred)
        target = self._target(xp, pred, target)
        self.output = pred  # from-logits losses replace it with probabilities
        value, grad = self._value_and_grad(xp, pred, target)
        self._grad = restore(grad)
        return value

    def backward(self):
        """``dL/dpred`` from the last :meth:`forward`, shape of ``pred``."""
        if self._grad is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        return self._grad

    def forward_logits(self, z, target, backend=None):
        """Loss value from the output layer's pre-activation ``z`` (see ``logits_of``).

        After it, :meth:`backward` returns ``dL/dz`` and ``self.output`` holds the
        activated output. ``backend`` (the model's) lets a fused device kernel run.
        """
        raise TypeError(f"{self.name} has no logits form")

    def _target(self, xp, pred, target):
        return _match_target(xp, pred, target, self.name)

    def _fused(self, kind, z, target, backend, fusion):
        """``(value, z)`` of the backend's fused head; value None where none ran."""
        out = backend.fused_loss(kind, z, target, fusion) if z.dtype == backend.dtype \
            else None
        if out is None:
            return None, fusion.add_bias(z)
        value, self.output, self._grad = out
        return value, z

    def _value_and_grad(self, xp, pred, target):
        raise NotImplementedError

    def config(self) -> dict:
        return {}


class MeanSquaredError(Loss):
    """``mean((pred - target) ** 2)`` over all elements (PyTorch/Keras definition)."""

    name = "mse"
    logits_of = "identity"  # no activation to fuse, but the step's head can be one launch
    takes_step_fusion = True

    def forward_logits(self, z, target, backend=None, fusion=None):
        value, z = (None, z) if fusion is None else self._fused("identity", z, target,
                                                                 backend, fusion)
        return value if value is not None else self.forward(z, target, backend)

    def _value_and_grad(self, xp, pred, target):
        diff = pred - target
        return xp.mean(diff * diff), diff * (2.0 / diff.size)


class MeanAbsoluteError(Loss):
    """``mean(abs(pred - target))`` over all elements; subgradient 0 at equality."""

    name = "mae"

    def _value_and_grad(self, xp, pred, target):
        diff = pred - target
        return xp.mean(xp.abs(diff)), sign(xp, diff) * (1.0 / diff.size)


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

    def _value_and_grad(self, xp, pred, target):
        diff = pred - target
        # clip(d, -delta, delta) is d inside the band and +-delta outside: it is both the
        # gradient and, through 0.5 c^2 + delta (|d| - |c|), the value.
        c = clip(xp, diff, -self.delta, self.delta)
        value = xp.mean(0.5 * (c * c) + self.delta * (xp.abs(diff) - xp.abs(c)))
        return value, c * (1.0 / diff.size)

    def config(self) -> dict:
        return {"delta": self.delta}


def _check_eps(eps) -> float:
    if not isinstance(eps, numbers.Real) or not 0.0 < eps < 0.5:
        raise ValueError(f"eps: expected a number in (0, 0.5), got {eps!r}")
    return float(eps)


class _CrossEntropy(Loss):
    """What the two cross-entropies share: logits or probabilities, clipping, metrics."""

    default_metrics = ("accuracy",)

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

    def forward_logits(self, z, target, backend=None, fusion=None):
        xp = backend.xp if backend is not None else array_namespace(z)
        if fusion is not None:
            value, z = self._fused("sigmoid", z, target, backend, fusion)
            if value is not None:
                return value
        z, restore = _upcast(xp, z)  # then the target in float32 too, for 16-bit logits
        value, grad = self._sigmoid_bce(xp, z, self._target(xp, z, target))
        self._grad = restore(grad)
        return value

    def _value_and_grad(self, xp, pred, target):
        if self.from_logits:
            return self._sigmoid_bce(xp, pred, target)
        p = clip(xp, pred, self.eps, 1.0 - self.eps)
        n = pred.size
        value = -xp.mean(target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p))
        return value, (p - target) / (p * (1.0 - p)) * (1.0 / n)

    def _sigmoid_bce(self, xp, z, target):
        # max(z, 0) - z*t + log(1 + exp(-|z|)) never overflows.
        e = xp.exp(-xp.abs(z))
        value = xp.mean(xp.maximum(z, 0.0) - z * target + xp.log1p(e))
        self.output = p = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # sigmoid(z)
        return value, (p - target) * (1.0 / z.size)


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

    def forward_logits(self, z, target, backend=None, fusion=None):
        xp = backend.xp if backend is not None else array_namespace(z)
        if fusion is not None:
            value, z = self._fused("softmax", z, target, backend, fusion)
            if value is not None:
                return value
        z, restore = _upcast(xp, z)
        if target.ndim != 1:  # after the upcast: 16-bit logits meet float32 targets
            target = _match_target(xp, z, target, self.name)
        value, self.output, grad = (softmax_cross_entropy(xp, z, target) if backend is None
                                    or z.dtype != backend.dtype
                                    else backend.softmax_cross_entropy(z, target))
        self._grad = restore(grad)
        return value

    def _value_and_grad(self, xp, pred, target):
        if self.from_logits:
            value, self.output, grad = softmax_cross_entropy(xp, pred, target)
            return value, grad
        n = pred.shape[0]
        p = clip(xp, pred, self.eps, 1.0)
        value = -xp.sum(target * xp.log(p)) * (1.0 / n)
        return value, -target / p * (1.0 / n)


LOSSES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
          "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
          "huber": Huber,
          "binary_crossentropy": BinaryCrossEntropy, "bce": BinaryCrossEntropy,
          "categorical_crossentropy": CategoricalCrossEntropy,
          "cross_entropy": CategoricalCrossEntropy, "ce": CategoricalCrossEntropy,
          "sparse_categorical_crossentropy": CategoricalCrossEntropy}


def get(name, **kwargs) -> Loss:
    """A loss object by name (or the object itself).

    Parameters
    ----------
    name : str or Loss
        ``"mse"``, ``"mae"``, ``"huber"``, ``"binary_crossentropy"``/``"bce"``,
        ``"categorical_crossentropy"``/``"cross_entropy"``.
    **kwargs
        Passed to the loss constructor (``from_logits=True``, ``eps``, ``delta``).

    Raises
    ------
    ValueError
        Unknown name, listing the valid ones.
    """
    return lookup("loss", name, LOSSES, Loss, **kwargs)
