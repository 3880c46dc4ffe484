"""Metrics: accuracy (binary and multiclass), MSE, MAE, R².

The functions take arrays of any namespace and return Python floats. The ``Metric``
objects used inside ``fit`` accumulate on the device batch by batch and are read once
per epoch (no host sync per step).
"""

from __future__ import annotations

import numpy as np

from .errors import lookup


def _ns(*arrays):
    import array_api_compat

    return array_api_compat.array_namespace(*arrays)


def _as_pair(y_true, y_pred):
    """``y_true`` moved to the namespace and device of ``y_pred``."""
    import array_api_compat

    from .backend import host_array
    from .errors import describe

    xp = _ns(y_pred)
    try:
        same = array_api_compat.array_namespace(y_true) is xp
    except TypeError:
        same = False
    if not same:
        host = host_array(y_true)
        if host.dtype.kind not in "biuf":
            raise TypeError(f"y_true: expected numbers, got {describe(y_true)}")
        y_true = xp.asarray(host, device=array_api_compat.device(y_pred))
    return xp, y_true, y_pred


def _correct(xp, pred, target):
    """Number of correct predictions; ``pred (N, C)`` or ``(N, 1)``/``(N,)`` probabilities."""
    if pred.ndim == 2 and pred.shape[1] > 1:
        if type(pred) is np.ndarray and type(target) is np.ndarray and target.ndim == 1:
            # Labels on NumPy, the per-step case inside fit: array methods and a ufunc
            # reduction skip three layers of dispatch (same count, same int64 dtype).
            return np.add.reduce(pred.argmax(axis=1) == target, dtype=np.int64)
        guess = xp.argmax(pred, axis=1)
        # Labels are compared as they are (integers); one-hot rows through their argmax.
        truth = xp.argmax(target, axis=1) if target.ndim == 2 else target
    else:
        guess = xp.reshape(pred, (-1,)) >= 0.5
        truth = xp.reshape(target, (-1,)) >= 0.5
    return xp.sum(xp.astype(guess == truth, xp.int32))  # an integer count


class Metric:
    """A metric streamed over batches: ``batch`` returns a device sum, ``result`` a float.

    A metric object keeps no state between calls. What it needs from a whole dataset
    before the batches (R²: the targets' total sum of squares) is returned by
    :meth:`prepare` to the phase that owns the dataset (fit's training or validation,
    ``evaluate``), which hands it back to :meth:`result`; so phases sharing one metric
    object never see each other's data.

    Attributes
    ----------
    name : str
    """

    name = "metric"

    def prepare(self, xp, target):
        """What :meth:`result` needs from a dataset's whole target ``(N, outputs)`` or
        ``(N,)``, or None (the default: nothing)."""
        return None

    def batch(self, xp, pred, target):
        """Sum of the per-sample statistic over a batch, as a 0-d device array.

        Parameters
        ----------
        pred : (batch, outputs)
        target : (batch, outputs) or (batch,)
        """
        raise NotImplementedError

    def result(self, total: float, n: float, prepared=None) -> float:
        """The metric value from the sum of :meth:`batch` over ``n`` samples and what
        :meth:`prepare` returned for the same dataset."""
        return total / n


class Accuracy(Metric):
    name = "accuracy"

    def batch(self, xp, pred, target):
        return _correct(xp, pred, target)


class MSE(Metric):
    name = "mse"

    def batch(self, xp, pred, target):
        d = pred - xp.reshape(target, pred.shape)
        return xp.sum(d * d) / (pred.size / pred.shape[0])


class MAE(Metric):
    name = "mae"

    def batch(self, xp, pred, target):
        return xp.sum(xp.abs(pred - xp.reshape(target, pred.shape))) / (
            pred.size / pred.shape[0])


class R2(Metric):
    """Coefficient of determination, ``1 - SS_res / SS_tot`` over all outputs."""

    name = "r2"

    def prepare(self, xp, target):
        """The total sum of squares ``SS_tot`` of ``target`` (a host float)."""
        centred = target - xp.mean(target, axis=0)
        return float(xp.sum(centred * centred))

    def batch(self, xp, pred, target):
        d = pred - xp.reshape(target, pred.shape)
        return xp.sum(d * d)

    def result(self, total, n, prepared=None):
        if prepared is None:
            raise ValueError("r2: result needs the total sum of squares that prepare "
                             "returned for the same dataset")
        return 1.0 - total / prepared if prepared > 0 else float("nan")


METRICS = {"accuracy": Accuracy, "acc": Accuracy, "mse": MSE, "mae": MAE, "r2": R2}


def get(name) -> Metric:
    """A fresh metric object by name (``accuracy``, ``mse``, ``mae``, ``r2``)."""
    return lookup("metric", name, METRICS, Metric)


def compute(metric, y_true, y_pred) -> float:
    """Evaluate one metric on whole arrays (on the device that holds ``y_pred``)."""
    from .backend import array_context

    m = get(metric)
    with array_context(y_pred):
        xp, y_true, y_pred = _as_pair(y_true, y_pred)
        if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 1:
            y_true = xp.reshape(y_true, (-1, 1))
        return m.result(float(m.batch(xp, y_pred, y_true)), int(y_pred.shape[0]),
                        m.prepare(xp, y_true))


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions.

    Parameters
    ----------
    y_true : (N,) labels or 0/1, or (N, C) one-hot
    y_pred : (N, C) scores/probabilities (argmax) or (N,) / (N, 1) probabilities
        (threshold 0.5)
    """
    return compute("accuracy", y_true, y_pred)


def mean_squared_error(y_true, y_pred) -> float:
    """Mean of squared errors over all elements. Shapes ``(N,)`` or ``(N, k)``."""
    return compute("mse", y_true, y_pred)


def mean_absolute_error(y_true, y_pred) -> float:
    """Mean of absolute errors over all elements. Shapes ``(N,)`` or ``(N, k)``."""
    return compute("mae", y_true, y_pred)


def r2_score(y_true, y_pred) -> float:
    """Coefficient of determination. Shapes ``(N,)`` or ``(N, k)``."""
    return compute("r2", y_true, y_pred)
