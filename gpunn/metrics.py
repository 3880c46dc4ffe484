"""Metrics: accuracy (binary and multiclass), MSE, MAE, R².

The functions take arrays of any namespace and return Python floats. The ``Metric``
objects used inside ``fit`` accumulate on the device batch by batch and are read once
per epoch (no host sync per step). With sample weights ``w`` every metric is the weighted
average of its per-sample value (``sum(w * correct) / sum(w)`` for accuracy), and R² is
scikit-learn's ``r2_score(sample_weight=w)`` (pooled over outputs).
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
    if pred.ndim == 2 and pred.shape[1] > 1 and type(pred) is np.ndarray and \
            type(target) is np.ndarray and target.ndim == 1:
        # Labels on NumPy, the per-step case inside fit: array methods and a ufunc
        # reduction skip three layers of dispatch (same count, same int64 dtype).
        return np.add.reduce(pred.argmax(axis=1) == target, dtype=np.int64)
    return xp.sum(xp.astype(_hits(xp, pred, target), xp.int32))  # an integer count


def _hits(xp, pred, target):
    """``(N,)`` booleans: is each row's prediction right."""
    if pred.ndim == 2 and pred.shape[1] > 1:
        guess = xp.argmax(pred, axis=1)
        # Labels are compared as they are (integers); one-hot rows through their argmax.
        truth = xp.argmax(target, axis=1) if target.ndim == 2 else target
    else:
        guess = xp.reshape(pred, (-1,)) >= 0.5
        truth = xp.reshape(target, (-1,)) >= 0.5
    return guess == truth


def _column(xp, weight, like):
    """``weight (N,)`` shaped and typed to scale the rows of ``like``, ``(N,)`` or
    ``(N, k)``."""
    weight = xp.reshape(weight, (-1,) + (1,) * (like.ndim - 1))
    return weight if weight.dtype == like.dtype else xp.astype(weight, like.dtype)


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
    #: What the metric scores, ``"classification"`` or ``"regression"`` (``fit`` refuses
    #: one of the other kind than its loss); None: either.
    task = None

    def prepare(self, xp, target, weight=None):
        """What :meth:`result` needs from a dataset's whole target ``(N, outputs)`` or
        ``(N,)`` and its sample weights ``(N,)``, or None (the default: nothing)."""
        return None

    def batch(self, xp, pred, target, weight=None):
        """Sum of the per-sample statistic over a batch, as a 0-d device array.

        Parameters
        ----------
        pred : (batch, outputs)
        target : (batch, outputs) or (batch,)
        weight : (batch,), optional
            Sample weights: the sum is then ``sum(weight * statistic)``.
        """
        raise NotImplementedError

    def result(self, total: float, n: float, prepared=None) -> float:
        """The metric value from the sum of :meth:`batch` over a dataset of ``n``
        samples (the sum of their weights when weighted) and what :meth:`prepare`
        returned for it."""
        return total / n


class Accuracy(Metric):
    name = "accuracy"
    task = "classification"

    def batch(self, xp, pred, target, weight=None):
        if weight is None:
            return _correct(xp, pred, target)
        return xp.sum(weight * xp.astype(_hits(xp, pred, target), weight.dtype))


class MSE(Metric):
    name = "mse"
    task = "regression"

    def batch(self, xp, pred, target, weight=None):
        d = pred - xp.reshape(target, pred.shape)
        if weight is None:
            return xp.sum(d * d) / (pred.size / pred.shape[0])
        return xp.sum(_column(xp, weight, d) * (d * d)) / (pred.size / pred.shape[0])


class MAE(Metric):
    name = "mae"
    task = "regression"

    def batch(self, xp, pred, target, weight=None):
        d = xp.abs(pred - xp.reshape(target, pred.shape))
        if weight is None:
            return xp.sum(d) / (pred.size / pred.shape[0])
        return xp.sum(_column(xp, weight, d) * d) / (pred.size / pred.shape[0])


class R2(Metric):
    """Coefficient of determination, ``1 - SS_res / SS_tot`` over all outputs; weighted
    as scikit-learn's ``r2_score(sample_weight=)``: both sums of squares weighted, around
    the weighted mean. Constant targets (``SS_tot = 0``) score 1 when predicted exactly,
    else 0, as scikit-learn's."""

    name = "r2"
    task = "regression"

    def prepare(self, xp, target, weight=None):
        """The total sum of squares ``SS_tot`` of ``target`` (a host float)."""
        if target.ndim == 1:
            target = xp.reshape(target, (-1, 1))
        if weight is None:
            centred = target - xp.mean(target, axis=0)
            return float(xp.sum(centred * centred))
        w = _column(xp, weight, target)
        centred = target - xp.sum(w * target, axis=0) / xp.sum(w)
        return float(xp.sum(w * (centred * centred)))

    def batch(self, xp, pred, target, weight=None):
        d = pred - xp.reshape(target, pred.shape)
        return xp.sum(d * d) if weight is None else xp.sum(_column(xp, weight, d) * (d * d))

    def result(self, total, n, prepared=None):
        if prepared is None:
            raise ValueError("r2: result needs the total sum of squares that prepare "
                             "returned for the same dataset")
        if prepared > 0:
            return 1.0 - total / prepared
        # Constant targets: scikit-learn's r2_score (force_finite) scores a perfect fit 1
        # and anything else 0, where the ratio itself is undefined.
        return 1.0 if total == 0 else 0.0


METRICS = {"accuracy": Accuracy, "acc": Accuracy, "mse": MSE, "mae": MAE, "r2": R2}
#: The metrics' names, without aliases, in the order messages list them.
NAMES = ("accuracy", "mse", "mae", "r2")


def get(name) -> Metric:
    """A fresh metric object by name (``accuracy``, ``mse``, ``mae``, ``r2``)."""
    return lookup("metric", name, METRICS, Metric)


def compute(metric, y_true, y_pred, sample_weight=None) -> float:
    """Evaluate one metric on whole arrays (on the device that holds ``y_pred``),
    weighted by ``sample_weight (N,)`` when given (see :func:`check_sample_weight`)."""
    from .backend import array_context

    m = get(metric)
    with array_context(y_pred):
        xp, y_true, y_pred = _as_pair(y_true, y_pred)
        if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[1] == 1:
            y_true = xp.reshape(y_true, (-1, 1))
        n, w = int(y_pred.shape[0]), None
        if sample_weight is not None:
            host = check_sample_weight(sample_weight, n)
            n = float(host.sum())
            w = xp.asarray(host.astype(_host_dtype(y_pred)), device=_device(y_pred))
        return m.result(float(m.batch(xp, y_pred, y_true, w)), n,
                        m.prepare(xp, y_true, w))


def check_sample_weight(sample_weight, n: int, what: str = "sample_weight") -> np.ndarray:
    """``sample_weight`` as a float64 host array, checked: shape ``(n,)``, finite, >= 0
    and not all zero.

    Raises
    ------
    ValueError, TypeError
        Naming ``what``, what was expected and what was given.
    """
    from .backend import host_array
    from .errors import describe

    try:
        w = np.asarray(host_array(sample_weight))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected an array of {n} non-negative numbers, got "
                        f"{describe(sample_weight)} ({exc})") from None
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected numbers, got {describe(sample_weight)}")
    if w.shape != (n,):
        raise ValueError(f"{what}: expected shape ({n},), one weight per row of X, got "
                         f"{describe(sample_weight)}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what}: contains NaN or Inf")
    if np.any(w < 0):
        raise ValueError(f"{what}: weights must be >= 0, got a minimum of {w.min():g}")
    if not np.any(w > 0):
        raise ValueError(f"{what}: all weights are zero; at least one row must count")
    return w


def _host_dtype(a):
    """NumPy's name of ``a``'s dtype (float32, float64; 16-bit scored in float32)."""
    name = str(getattr(a.dtype, "name", a.dtype)).rsplit(".", 1)[-1]
    return name if name in ("float32", "float64") else "float32"


def _device(a):
    import array_api_compat

    return array_api_compat.device(a)


def accuracy(y_true, y_pred, sample_weight=None) -> float:
    """Fraction of correct predictions (weighted: ``sum(w * correct) / sum(w)``).

    Parameters
    ----------
    y_true : (N,) labels or 0/1, or (N, C) one-hot
    y_pred : (N, C) scores/probabilities (argmax) or (N,) / (N, 1) probabilities
        (threshold 0.5)
    sample_weight : (N,), optional
    """
    return compute("accuracy", y_true, y_pred, sample_weight)


def mean_squared_error(y_true, y_pred, sample_weight=None) -> float:
    """Mean of squared errors over all elements (rows weighted by ``sample_weight (N,)``).
    Shapes ``(N,)`` or ``(N, k)``."""
    return compute("mse", y_true, y_pred, sample_weight)


def mean_absolute_error(y_true, y_pred, sample_weight=None) -> float:
    """Mean of absolute errors over all elements (rows weighted by ``sample_weight
    (N,)``). Shapes ``(N,)`` or ``(N, k)``."""
    return compute("mae", y_true, y_pred, sample_weight)


def r2_score(y_true, y_pred, sample_weight=None) -> float:
    """Coefficient of determination (pooled over outputs), weighted by ``sample_weight
    (N,)`` as scikit-learn's. Shapes ``(N,)`` or ``(N, k)``."""
    return compute("r2", y_true, y_pred, sample_weight)
