"""Scores of finished predictions, on the host in float64: what ``gpunn evaluate`` and the
end of ``gpunn train`` report (per-class precision, recall and F1, the confusion matrix;
MAE, RMSE and R²). The training metrics (:mod:`gpunn.metrics`) run on the device, batch
by batch; these run once, on a whole set of predictions already copied to the host."""

from __future__ import annotations

import numpy as np


def regression_report(y_true, y_pred) -> dict:
    """MAE, RMSE and R² of predictions (averaged over outputs for several).

    Parameters
    ----------
    y_true, y_pred : (N,) or (N, outputs)

    Returns
    -------
    dict
        ``{"mae": float, "rmse": float, "r2": float, "n": int}``; R² is 1 for a perfect
        fit, 0 for predicting the mean of ``y_true``, negative for worse (and ``-inf``
        for a constant ``y_true`` predicted wrongly, as there is nothing to explain).
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    t, p = t.reshape(len(t), -1), p.reshape(len(p), -1)
    if t.shape != p.shape or not len(t):
        raise ValueError(f"regression_report: expected predictions of the targets' shape, "
                         f"got {p.shape} for {t.shape}")
    err = p - t
    total = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    resid = np.sum(err ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 0, 1 - resid / np.where(total > 0, total, 1),
                      np.where(resid > 0, -np.inf, 1.0))
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "r2": float(np.mean(r2)), "n": len(t)}


def classification_report(y_true, y_pred, n_classes: int) -> dict:
    """Accuracy, the confusion matrix and per-class precision, recall, F1 and support.

    Parameters
    ----------
    y_true, y_pred : (N,) int
        Class indices in ``[0, n_classes)``.
    n_classes : int

    Returns
    -------
    dict
        ``accuracy`` (float), ``confusion`` (``(n_classes, n_classes)`` int: row = true
        class, column = predicted, as scikit-learn's ``confusion_matrix``), and
        ``precision``, ``recall``, ``f1``, ``support``: ``(n_classes,)`` arrays (a class
        never predicted has precision 0, one never present recall 0, as scikit-learn
        with ``zero_division=0``), ``macro_f1`` (float).
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape or not len(t):
        raise ValueError(f"classification_report: expected one prediction per label, got "
                         f"{p.shape} for {t.shape}")
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (t, p), 1)
    hits = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, hits / np.maximum(support, 1), 0.0)
        both = precision + recall
        f1 = np.where(both > 0, 2 * precision * recall / np.where(both > 0, both, 1), 0.0)
    return {"accuracy": float(hits.sum() / len(t)), "confusion": confusion,
            "precision": precision, "recall": recall, "f1": f1, "support": support,
            "macro_f1": float(f1.mean())}
