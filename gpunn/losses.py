"""Losses: value and gradient with respect to the model output.

``loss.forward(pred, target)`` returns the value as a 0-d array on the device (no host
sync); ``loss.backward()`` returns ``dL/dpred`` of ``pred``'s shape. Cross-entropies also
offer ``forward_logits(z, target)``, fused with the output activation (softmax or
sigmoid): faster, and stable where ``log(softmax)`` would underflow.
"""

from __future__ import annotations

import numbers

from .errors import describe, lookup


def _namespace(a):
    import array_api_compat

    return array_api_compat.array_namespace(a)


def _upcast(xp, pred):
    """16-bit predictions are scored in float32 (a squared error of 300 already overflows
    float16; bfloat16 keeps 3 significant digits); returns the float32 array and a
    function casting the gradient back."""
    dtype = pred.dtype
    if getattr(dtype, "name", None) not in ("float16", "bfloat16"):
        return pred, lambda grad: grad
    return xp.astype(pred, xp.float32), lambda grad: xp.astype(grad, dtype)


def _match_target(xp, pred, target, name: str):
    """Cast ``target`` to ``pred``'s dtype and shape, accepting ``(N,)`` for ``(N, 1)``."""
    if target.ndim == 1 and pred.ndim == 2 and pred.shape[1] == 1:
        target = xp.reshape(target, (-1, 1))
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"{name}: target shape {tuple(target.shape)} does not match "
                         f"prediction shape {tuple(pred.shape)}")
    return target if target.dtype == pred.dtype else xp.astype(target, pred.dtype)


class Loss:
    """Base class. Subclasses define ``_value_and_grad(xp, pred, target)``.

    Attributes
    ----------
    name : str
    fused_activation : str or None
        Output activation whose pre-activation ``forward_logits`` accepts.
    """

    name = "loss"
    fused_activation: str | None = None

    def __init__(self):
        self._grad = None
        self.output = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def prepare_target(self, xp, target, n_outputs: int):
        """Bring a dataset's targets into the shape and dtype this loss compares against.

        Parameters
        ----------
        xp : namespace
        target : (N,) or (N, n_outputs) array on the model's device
        n_outputs : int
            Width of the model output.

        Returns
        -------
        (N, n_outputs) array
        """
        if target.ndim == 1 and n_outputs == 1:
            target = xp.reshape(target, (-1, 1))
        if target.ndim != 2 or target.shape[1] != n_outputs:
            raise ValueError(f"y: expected targets of shape (N,) or (N, {n_outputs}) for "
                             f"{self.name} with {n_outputs} output(s), got {describe(target)}")
        return target

    def forward(self, pred, target):
        """Loss value.

        Parameters
        ----------
        pred : (batch, outputs)
        target : (batch, outputs), or (batch,) where the loss allows it

        Returns
        -------
        0-d array on the device of ``pred``.
        """
        xp = _namespace(pred)
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

    def forward_logits(self, z, target):
        """Loss value from the output layer's pre-activation (fused path).

        After it, :meth:`backward` returns ``dL/dz`` and ``self.output`` holds the
        activated output.
        """
        raise TypeError(f"{self.name} has no fused form")

    def _target(self, xp, pred, target):
        return _match_target(xp, pred, target, self.name)

    def _value_and_grad(self, xp, pred, target):
        raise NotImplementedError

    def config(self) -> dict:
        return {}


class MeanSquaredError(Loss):
    """``mean((pred - target) ** 2)`` over all elements (PyTorch/Keras definition)."""

    name = "mse"

    def _value_and_grad(self, xp, pred, target):
        diff = pred - target
        return xp.mean(diff * diff), diff * (2.0 / diff.size)


class MeanAbsoluteError(Loss):
    """``mean(abs(pred - target))`` over all elements; subgradient 0 at equality."""

    name = "mae"

    def _value_and_grad(self, xp, pred, target):
        diff = pred - target
        return xp.mean(xp.abs(diff)), xp.sign(diff) * (1.0 / diff.size)


def _check_eps(eps) -> float:
    if not isinstance(eps, numbers.Real) or not 0.0 < eps < 0.5:
        raise ValueError(f"eps: expected a number in (0, 0.5), got {eps!r}")
    return float(eps)


class _CrossEntropy(Loss):
    """What the two cross-entropies share: logits or probabilities, clipping, fusion."""

    def __init__(self, from_logits: bool = False, eps: float = 1e-7):
        super().__init__()
        self.from_logits = bool(from_logits)
        self.eps = _check_eps(eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"

    def forward_logits(self, z, target):
        xp = _namespace(z)
        z, restore = _upcast(xp, z)
        target = self._target(xp, z, target)
        value, grad = self._from_logits(xp, z, target)
        self._grad = restore(grad)
        return value

    def _from_logits(self, xp, z, target):
        raise NotImplementedError

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
    fused_activation = "sigmoid"

    def _value_and_grad(self, xp, pred, target):
        if self.from_logits:
            return self._from_logits(xp, pred, target)
        p = xp.clip(pred, self.eps, 1.0 - self.eps)
        n = pred.size
        value = -xp.mean(target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p))
        return value, (p - target) / (p * (1.0 - p)) * (1.0 / n)

    def _from_logits(self, xp, z, target):
        # max(z, 0) - z*t + log(1 + exp(-|z|)) never overflows.
        e = xp.exp(-xp.abs(z))
        value = xp.mean(xp.maximum(z, 0.0) - z * target + xp.log1p(e))
        self.output = p = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # sigmoid(z)
        return value, (p - target) * (1.0 / z.size)


class CategoricalCrossEntropy(_CrossEntropy):
    """Categorical cross-entropy, summed over classes and averaged over the batch.

    Targets are integer labels ``(N,)`` or one-hot / probability rows ``(N, C)``.

    Parameters
    ----------
    from_logits : bool, default False
        ``pred`` are logits rather than softmax probabilities.
    eps : float, default 1e-7
        Probabilities are clipped below at ``eps`` (probability input only).
    """

    name = "categorical_crossentropy"
    fused_activation = "softmax"

    def prepare_target(self, xp, target, n_outputs):
        # Integer labels stay labels: shuffling them moves N ints instead of N*C floats,
        # and each batch's one-hot is a cheap comparison.
        if target.ndim == 1:
            return target
        return super().prepare_target(xp, target, n_outputs)

    def _target(self, xp, pred, target):
        if target.ndim == 1 and pred.ndim == 2:
            target = one_hot(xp, target, pred.shape[1], pred.dtype)
        return _match_target(xp, pred, target, self.name)

    def _value_and_grad(self, xp, pred, target):
        if self.from_logits:
            return self._from_logits(xp, pred, target)
        n = pred.shape[0]
        p = xp.clip(pred, self.eps, 1.0)
        value = -xp.sum(target * xp.log(p)) * (1.0 / n)
        return value, -target / p * (1.0 / n)

    def _from_logits(self, xp, z, target):
        shifted = z - xp.max(z, axis=-1, keepdims=True)
        e = xp.exp(shifted)
        total = xp.sum(e, axis=-1, keepdims=True)
        n = z.shape[0]
        value = -xp.sum(target * (shifted - xp.log(total))) * (1.0 / n)
        self.output = p = e / total  # the softmax, reusing the exponentials
        # p - t assumes each target row sums to 1 (one-hot or a distribution).
        return value, (p - target) * (1.0 / n)


def one_hot(xp, labels, n_classes: int, dtype):
    """One-hot rows ``(N, n_classes)`` from integer labels ``(N,)`` (no scatter needed)."""
    if xp.isdtype(labels.dtype, "real floating"):
        labels = xp.astype(labels, xp.int64)
    classes = xp.arange(n_classes, dtype=labels.dtype, device=_device(labels))
    return xp.astype(xp.reshape(labels, (-1, 1)) == xp.reshape(classes, (1, -1)), dtype)


def _device(a):
    import array_api_compat

    return array_api_compat.device(a)


LOSSES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
          "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
          "binary_crossentropy": BinaryCrossEntropy, "bce": BinaryCrossEntropy,
          "categorical_crossentropy": CategoricalCrossEntropy,
          "cross_entropy": CategoricalCrossEntropy, "ce": CategoricalCrossEntropy,
          "sparse_categorical_crossentropy": CategoricalCrossEntropy}


def get(name, **kwargs) -> Loss:
    """A loss object by name (or the object itself).

    Parameters
    ----------
    name : str or Loss
        ``"mse"``, ``"mae"``, ``"binary_crossentropy"``/``"bce"``,
        ``"categorical_crossentropy"``/``"cross_entropy"``.
    **kwargs
        Passed to the loss constructor (``from_logits=True``, ``eps``).

    Raises
    ------
    ValueError
        Unknown name, listing the valid ones.
    """
    return lookup("loss", name, LOSSES, Loss, **kwargs)
