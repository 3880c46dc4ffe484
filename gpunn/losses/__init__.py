"""Losses: value and gradient with respect to the model output, and what is specific to
each loss: its targets (``prepare_target`` checks them), default metrics and logits form.

``loss.compute(pred, target)`` returns a :class:`LossResult`: the value as a 0-d array on
the device (no host sync), ``dL/dpred`` of ``pred``'s shape and the output metrics score;
the loss object keeps nothing of the call, so training, validation and ``evaluate`` can
share it. A loss whose ``logits_of`` names the output layer's activation (softmax or
sigmoid for the cross-entropies) also offers ``compute_logits(z, target)`` on that layer's
pre-activation ``z``, whose gradient is then ``dL/dz``: faster, and stable where
``log(softmax)`` would underflow. For hand-written loops, ``forward`` (or
``forward_logits``) then ``backward`` make the same call in two halves (the loss keeps the
last result for ``backward``, and only for it).

The contract is :mod:`.base`; regression losses live in :mod:`.regression`, the
cross-entropies in :mod:`.crossentropy`. A new loss is one class (here or in a user's own
file): ``_value_and_grad(xp, pred, target, share=None)`` with :func:`weighted_mean` and
:func:`weigh` for sample weights, registered by name with :func:`register` for ``get``,
``fit(loss="name")`` and model files."""

from __future__ import annotations

from ..errors import lookup
from .base import Loss, LossResult, weigh, weighted_mean
from .crossentropy import BinaryCrossEntropy, CategoricalCrossEntropy
from .regression import Huber, MeanAbsoluteError, MeanSquaredError

__all__ = ["Loss", "LossResult", "MeanSquaredError", "MeanAbsoluteError", "Huber",
           "BinaryCrossEntropy", "CategoricalCrossEntropy", "LOSSES", "get", "register",
           "weighted_mean", "weigh"]


LOSSES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
          "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
          "huber": Huber,
          "binary_crossentropy": BinaryCrossEntropy, "bce": BinaryCrossEntropy,
          "categorical_crossentropy": CategoricalCrossEntropy,
          "cross_entropy": CategoricalCrossEntropy, "ce": CategoricalCrossEntropy,
          "sparse_categorical_crossentropy": CategoricalCrossEntropy}


def register(*names):
    """Class decorator: make a loss known by ``names`` (default its ``name`` attribute)
    to :func:`get`, ``fit(loss=...)`` and model files (which store ``loss.name``).

    Raises
    ------
    ValueError
        A name already belongs to another class.
    """
    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, Loss)):
            raise TypeError(f"losses.register: expected a Loss subclass, got {cls!r}")
        keys = [n.lower() for n in (names or (cls.name,))]
        if cls.name.lower() not in keys:
            keys.append(cls.name.lower())  # files store loss.name: it must resolve
        for key in keys:
            owner = LOSSES.get(key)
            if owner is not None and owner is not cls and (
                    owner.__module__, owner.__qualname__) != (cls.__module__,
                                                              cls.__qualname__):
                raise ValueError(f"losses.register: {key!r} already names "
                                 f"{owner.__module__}.{owner.__qualname__}")
        for key in keys:
            LOSSES[key] = cls
        return cls

    return deco


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
