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
cross-entropies in :mod:`.crossentropy`. A new loss is a class in one of them (or a module
of its own), named in ``LOSSES``."""

from __future__ import annotations

from ..errors import lookup
from .base import Loss, LossResult
from .crossentropy import BinaryCrossEntropy, CategoricalCrossEntropy
from .regression import Huber, MeanAbsoluteError, MeanSquaredError

__all__ = ["Loss", "LossResult", "MeanSquaredError", "MeanAbsoluteError", "Huber",
           "BinaryCrossEntropy", "CategoricalCrossEntropy", "LOSSES", "get"]


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
