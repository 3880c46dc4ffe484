"""Pictures of training (needs the ``plot`` extra: ``pip install "gpunn[plot]"``)."""

from __future__ import annotations

import numpy as np

from .atomic import atomic_path
from .backend import host_array


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plots need matplotlib: pip install "gpunn[plot]"') from None
    return plt


def history(hist, path) -> None:
    """Loss and metric curves per epoch (train and validation) as a PNG.

    Parameters
    ----------
    hist : History or dict of str -> list of float
    path : str
    """
    plt = _pyplot()
    logs = getattr(hist, "history", hist)
    names = [k for k in logs if not k.startswith("val_") and k != "lr"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(logs[name]) + 1)
        ax.plot(epochs, logs[name], label="train")
        if f"val_{name}" in logs:
            ax.plot(epochs, logs[f"val_{name}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def decision_boundary(model, X, y, path, classes=None, resolution: int = 200) -> None:
    """Predicted class over the plane of 2-D inputs, with the samples on top, as a PNG.

    Parameters
    ----------
    model : Sequential
        A classifier with 2 input features.
    X : (N, 2)
    y : (N,) class indices
    """
    plt = _pyplot()
    X, y = np.asarray(host_array(X), dtype=np.float64), np.asarray(host_array(y)).ravel()
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary: needs 2-D inputs, got shape {X.shape}")
    pad = 0.1 * (X.max(0) - X.min(0) + 1e-9)
    lo, hi = X.min(0) - pad, X.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    proba = np.asarray(host_array(model.predict(grid)), dtype=np.float64)
    zz = (proba[:, 0] >= 0.5).astype(int) if proba.shape[1] == 1 else proba.argmax(1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.contourf(gx, gy, zz.reshape(gx.shape), alpha=0.3, cmap="coolwarm")
    scatter = ax.scatter(X[:, 0], X[:, 1], c=y, s=8, cmap="coolwarm", edgecolors="none")
    if classes:
        handles = scatter.legend_elements()[0]
        ax.legend(handles, list(classes)[:len(handles)], fontsize=8, loc="best")
    ax.set_title("decision boundary")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
