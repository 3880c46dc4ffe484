"""Metrics: accuracy, precision, recall, F1 and ROC AUC (binary and multiclass), MSE, MAE,
R².

The functions take arrays of any namespace and return Python floats. The ``Metric``
objects used inside ``fit`` accumulate on the device batch by batch and are read once
per epoch (no host sync per step): a sum per batch, 0-d for most, a fixed-shape array of
counts for the ratios of counts (precision, recall, F1, AUC). With sample weights ``w``
every metric is the weighted average of its per-sample value (``sum(w * correct) /
sum(w)`` for accuracy; weighted counts for the ratios), and R² is scikit-learn's
``r2_score(sample_weight=w)`` (pooled over outputs).
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
        """Sum of the per-sample statistic over a batch, as a 0-d device array (or an
        array of counts whose shape depends only on the width of ``pred``: the batches'
        arrays add up element-wise).

        Parameters
        ----------
        pred : (batch, outputs)
        target : (batch, outputs) or (batch,)
        weight : (batch,), optional
            Sample weights: the sum is then ``sum(weight * statistic)``.
        """
        raise NotImplementedError

    def result(self, total, n: float, prepared=None) -> float:
        """The metric value from the sum of :meth:`batch` (a float; a float64 NumPy array
        for counts) over a dataset of ``n``
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


def _class_columns(xp, pred, target):
    """``(guess, truth)``: ``(N, C)`` 0/1 arrays in the dtype of ``pred``, one column per
    class (C of a softmax output; one column, the positive class, of one sigmoid
    output)."""
    import array_api_compat

    if pred.ndim == 2 and pred.shape[1] > 1:
        c = pred.shape[1]
        classes = xp.reshape(xp.arange(c, device=array_api_compat.device(pred)), (1, -1))
        truth = xp.argmax(target, axis=1) if target.ndim == 2 else target
        g = xp.reshape(xp.argmax(pred, axis=1), (-1, 1)) == classes
        t = xp.reshape(xp.astype(truth, classes.dtype), (-1, 1)) == classes
    else:
        g = xp.reshape(pred, (-1, 1)) >= 0.5
        t = xp.reshape(xp.astype(target, pred.dtype), (-1, 1)) >= 0.5  # labels may be ints
    dtype = _count_dtype(xp, pred)
    return xp.astype(g, dtype), xp.astype(t, dtype)


def _count_dtype(xp, pred):
    """What counts are summed in: the output's float32 or float64; float32 for 16-bit
    outputs (float16 counts exactly only to 2048, bfloat16 to 256)."""
    return pred.dtype if pred.dtype in (xp.float32, xp.float64) else xp.float32


class _Counts(Metric):
    """Precision, recall and F1 from per-class counts summed over batches: true
    positives, predicted and actual rows of each class, ``(3, C)`` (weighted: their
    weights). Binary (one sigmoid output): of the positive class; multiclass: the
    unweighted mean over classes ("macro", scikit-learn's ``average="macro"``). A class
    never predicted (or never present) scores 0 there, as scikit-learn's
    ``zero_division=0``."""

    task = "classification"

    def batch(self, xp, pred, target, weight=None):
        g, t = _class_columns(xp, pred, target)
        hit = g * t
        if weight is not None:
            w = _column(xp, weight, g)
            g, t, hit = g * w, t * w, hit * w
        return xp.stack([xp.sum(hit, axis=0), xp.sum(g, axis=0), xp.sum(t, axis=0)])

    def result(self, total, n, prepared=None):
        tp, predicted, actual = np.asarray(total, dtype=np.float64).reshape(3, -1)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
        return float(np.mean({"precision": precision, "recall": recall,
                              "f1": f1}[self.name]))


class Precision(_Counts):
    """``tp / (tp + fp)``; macro over classes for a softmax output."""

    name = "precision"


class Recall(_Counts):
    """``tp / (tp + fn)``; macro over classes for a softmax output."""

    name = "recall"


class F1(_Counts):
    """The harmonic mean of precision and recall (per class, then the macro mean over
    classes for a softmax output)."""

    name = "f1"


class AUC(Metric):
    """Area under the ROC curve, from counts at :attr:`thresholds` evenly spaced scores
    in [0, 1] (as Keras' ``AUC``: within about 1/thresholds of the exact area). Binary: of
    the one sigmoid output; multiclass: each softmax column one class against the rest,
    then the mean over classes (scikit-learn's ``roc_auc_score(multi_class="ovr",
    average="macro")``). Counts are ``(C, 2, thresholds)``: the positive and the negative
    rows (weights) scored at or above each threshold. A class absent from the data, or
    present in every row, has no curve: the result is then NaN."""

    name = "auc"
    task = "classification"
    thresholds = 200

    def batch(self, xp, pred, target, weight=None):
        import array_api_compat

        _, t = _class_columns(xp, pred, target)  # (N, C): each row's class
        scores = pred if pred.ndim == 2 else xp.reshape(pred, (-1, 1))
        dtype = _count_dtype(xp, pred)
        scores = xp.astype(scores, dtype)
        cut = xp.linspace(0.0, 1.0, self.thresholds, dtype=dtype,
                          device=array_api_compat.device(pred))
        above = xp.astype(xp.reshape(scores, scores.shape + (1,)) >= cut, dtype)
        pos = xp.reshape(t, t.shape + (1,))
        neg = 1 - pos
        if weight is not None:
            w = xp.reshape(xp.astype(weight, dtype), (-1, 1, 1))
            pos, neg = pos * w, neg * w
        return xp.stack([xp.sum(above * pos, axis=0), xp.sum(above * neg, axis=0)], axis=1)

    def result(self, total, n, prepared=None):
        counts = np.asarray(total, dtype=np.float64).reshape(-1, 2, self.thresholds)
        areas = []
        for tp, fp in counts:
            p, q = tp[0], fp[0]  # every row scores >= 0: all positives, all negatives
            if p <= 0 or q <= 0:
                areas.append(np.nan)
                continue
            # The curve from (1, 1) at threshold 0 down to (0, 0) past the last one.
            tpr = np.concatenate([tp / p, [0.0]])
            fpr = np.concatenate([fp / q, [0.0]])
            areas.append(float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)))
        return float(np.mean(areas))


METRICS = {"accuracy": Accuracy, "acc": Accuracy, "mse": MSE, "mae": MAE, "r2": R2,
           "precision": Precision, "recall": Recall, "f1": F1, "auc": AUC}
#: The metrics' names, without aliases, in the order messages list them.
NAMES = ("accuracy", "precision", "recall", "f1", "auc", "mse", "mae", "r2")


def host_value(total):
    """A metric's device sum read to the host: a float for a 0-d sum, else a float64
    NumPy array (counts)."""
    from .backend import host_array

    value = np.asarray(host_array(total), dtype=np.float64)
    return float(value) if value.ndim == 0 else value


def get(name) -> Metric:
    """A fresh metric object by name (``accuracy``, ``precision``, ``recall``, ``f1``,
    ``auc``, ``mse``, ``mae``, ``r2``)."""
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
        return m.result(host_value(m.batch(xp, y_pred, y_true, w)), n,
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
