"""Sample weights for ``fit`` and ``evaluate``: ``sample_weight`` and ``class_weight``
checked and combined into one weight per row, placed with the targets.

The semantics are scikit-learn's: a batch's loss is ``sum(w_i l_i) / sum(w_i)`` (see
:meth:`gpunn.losses.Loss.compute`), and the epoch's loss and metrics are weighted averages
over its rows. ``class_weight`` (Keras' argument) multiplies each row's weight by its
class's.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..backend import NumpyBackend, host_array
from ..backend.ops import beyond_range
from ..errors import describe
from ..metrics import check_sample_weight


def as_weights(model, T, streaming: bool, loss, sample_weight=None, class_weight=None,
               what: str = ""):
    """One weight per row of the prepared targets ``T``, where ``T`` lives, or None.

    Parameters
    ----------
    model : Sequential
    T : (N,) or (N, outputs)
        Targets as ``loss.prepare_target`` returned them (on the device, or in host
        memory when ``streaming``).
    loss : Loss
    sample_weight : (N,) array-like, optional
        Finite, >= 0, not all zero.
    class_weight : dict {class: weight} or "balanced", optional
        For classification losses: a softmax output's classes are ``0..C-1``, one sigmoid
        output's ``0`` and ``1``; classes left out weigh 1. ``"balanced"`` is
        scikit-learn's ``n_samples / (n_classes * bincount(y))`` over the classes present.
    what : str
        Prefix of the argument names in errors (``"val_"``).

    Returns
    -------
    (N,) array or None
        In the model's dtype (float32 for 16-bit models, whose losses are computed in
        float32); None when neither argument is given.

    Raises
    ------
    ValueError, TypeError
        Naming the argument, what was expected and what was given.
    """
    n = int(T.shape[0])
    w = None if sample_weight is None else check_sample_weight(
        sample_weight, n, f"{what}sample_weight")
    if class_weight is not None:
        per_row = _class_weights(model, host_array(T), loss, class_weight)
        w = per_row if w is None else w * per_row
        if not np.any(w > 0):
            raise ValueError("class_weight: all weights are zero (with sample_weight, if "
                             "given); at least one row must count")
    if w is None:
        return None
    backend = model.backend if not streaming else NumpyBackend(dtype=model.backend.dtype_name)
    dtype = "float32" if backend.low_precision else backend.dtype_name
    problem = beyond_range(w, dtype)  # finite in float64, Inf once cast
    if problem:
        name = f"{what}sample_weight" if sample_weight is not None else "class_weight"
        raise ValueError(f"{name}: {problem}; weights are relative, so divide them all by "
                         "the largest")
    return backend.asarray(w, dtype=dtype)


def _class_weights(model, T, loss, class_weight) -> np.ndarray:
    """``(N,)`` float64: each row's class's weight."""
    if not getattr(loss, "classification", False):
        raise ValueError(f"class_weight: needs a classification loss (categorical or "
                         f"binary cross-entropy), got {loss.name}; weigh rows with "
                         "sample_weight")
    outputs = model.output_dim
    if T.ndim == 2 and T.shape[1] > 1:
        if loss.logits_of != "softmax":
            raise ValueError(f"class_weight: {outputs} sigmoid outputs (multi-label) give a "
                             "row no single class; weigh rows with sample_weight")
        labels = np.argmax(T, axis=1)  # one-hot (or probability) rows: their top class
    elif loss.logits_of == "softmax":
        labels = T.reshape(-1).astype(np.int64)
    else:
        labels = (T.reshape(-1) >= 0.5).astype(np.int64)  # binary targets
    classes = max(outputs, 2)
    table = _weight_table(class_weight, labels, classes)
    return table[labels]


def _weight_table(class_weight, labels, classes: int) -> np.ndarray:
    """``(classes,)`` weights from ``class_weight`` (classes it leaves out weigh 1)."""
    if isinstance(class_weight, str) and class_weight == "balanced":
        counts = np.bincount(labels, minlength=classes).astype(np.float64)
        present = counts > 0
        table = np.ones(classes)
        table[present] = len(labels) / (int(present.sum()) * counts[present])
        return table
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight: expected a dict {{class: weight}} or 'balanced', "
                         f"got {describe(class_weight)}")
    table = np.ones(classes)
    for key, value in class_weight.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral) or \
                not 0 <= int(key) < classes:
            raise ValueError(f"class_weight: unknown class {key!r} (this model's classes "
                             f"are 0..{classes - 1})")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or \
                not math.isfinite(value) or value < 0:
            raise ValueError(f"class_weight: class {key!r}: expected a finite weight >= 0, "
                             f"got {value!r}")
        table[int(key)] = float(value)
    return table
