"""Pictures of training (needs the ``plot`` extra: ``pip install "gpunn[plot]"``).

Colours are Okabe and Ito's colour-blind-safe set, and every series also differs by marker
or line style, so the pictures read in greyscale too.
"""

from __future__ import annotations

import numpy as np

from .atomic import atomic_path
from .backend import host_array

#: Okabe-Ito colours (blue, orange, green, purple, sky blue, vermilion, yellow, black).
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000"]
MARKERS = "os^Dv<>pPX"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plots need matplotlib: pip install "gpunn[plot]"') from None
    return plt


#: What ``--plot`` means in every command, for its help text.
PLOT_HELP = ("a folder (the figures are written into it, created if missing) or a .png "
             "file (the command's main figure; any other is written beside it, its name "
             "added: run.png, run-decision_boundary.png); needs matplotlib")


def figure_paths(target: str, names: list[str]) -> list[str]:
    """Where ``--plot target`` puts figures ``names`` (the first the main one): inside the
    folder ``target`` as ``name.png``, or, when ``target`` is a ``.png`` file, the first
    there and the others beside it as ``stem-name.png``."""
    import os

    if target.lower().endswith(".png"):
        stem = target[:-4]
        return [target] + [f"{stem}-{name}.png" for name in names[1:]]
    return [os.path.join(target, f"{name}.png") for name in names]


def plot_outputs(target: str | None, names: list[str]) -> list[str]:
    """The files ``--plot target`` will write (:func:`figure_paths`; none without it),
    after checking that matplotlib is importable: a command calls it before any work and
    checks the paths with its other outputs.

    Raises
    ------
    ImportError
        Saying what to install.
    """
    if not target:
        return []
    _pyplot()
    return figure_paths(target, names)


def _save(plt, fig, path, dpi=110):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return fig


def history(hist, path, title: str | None = None, best_epoch: int | None = None,
            monitor: str | None = None):
    """Loss and metric curves per epoch (training and validation) as a PNG.

    Parameters
    ----------
    hist : History or dict of str -> list of float
    path : str
    title : str, optional
        Above the panels, e.g. ``"spirals: 2-64-64-3, adam lr 0.01"``.
    best_epoch : int, optional
        Marked on every panel (the epoch whose weights were kept), counted from 1.
    monitor : str, optional
        The logged value ``best_epoch`` is best by; its point is marked.

    Returns
    -------
    matplotlib.figure.Figure (closed)
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    logs = getattr(hist, "history", hist)
    names = [k for k in logs if not k.startswith("val_") and k != "lr"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(logs[name]) + 1)
        dots = {"marker": ".", "markersize": 5} if len(epochs) <= 50 else {}
        ax.plot(epochs, logs[name], color=COLOURS[0], label="training", **dots)
        if f"val_{name}" in logs:
            ax.plot(epochs, logs[f"val_{name}"], color=COLOURS[1], linestyle="--",
                    label="validation", **dots)
        if best_epoch:
            ax.axvline(best_epoch, color="0.4", linestyle=":", linewidth=1.2,
                       label=f"weights kept: epoch {best_epoch}")
        if best_epoch and monitor in (name, f"val_{name}"):
            ax.plot([best_epoch], [logs[monitor][best_epoch - 1]], linestyle="none",
                    marker="*", markersize=13, color="black",
                    label=f"best {monitor} {logs[monitor][best_epoch - 1]:.4f}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_xlim(0.5, len(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    # One legend for all panels, below them: it never hides a curve.
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=8,
               ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(plt, fig, path)


def decision_boundary(model, X, y, path, classes=None, resolution: int = 200,
                      feature_names=None, title: str | None = None):
    """Predicted class over the plane of 2-D inputs, with the samples on top, as a PNG.

    Parameters
    ----------
    model : Sequential
        A classifier with 2 input features.
    X : (N, 2)
    y : (N,) class indices
    classes : list of str, optional
        The name of each class index (the legend).
    feature_names : two str, optional
        The axis labels.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure (closed)
    """
    plt = _pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap

    X, y = np.asarray(host_array(X), dtype=np.float64), np.asarray(host_array(y)).ravel()
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary: needs 2-D inputs, got shape {X.shape}")
    pad = 0.1 * (X.max(0) - X.min(0) + 1e-9)
    lo, hi = X.min(0) - pad, X.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    proba = np.asarray(host_array(model.predict(grid)), dtype=np.float64)
    zz = ((proba[:, 0] >= 0.5).astype(int) if proba.shape[1] == 1 else
          proba.argmax(1)).reshape(gx.shape)
    k = max(len(classes or []), 2 if proba.shape[1] == 1 else proba.shape[1])
    colours = COLOURS[:k] if k <= len(COLOURS) else [
        plt.cm.viridis(v) for v in np.linspace(0, 1, k)]
    levels = np.arange(k + 1) - 0.5
    fig, ax = plt.subplots(figsize=(6.6 if k > 4 else 5.6, 4.8))
    ax.contourf(gx, gy, zz, levels=levels, cmap=ListedColormap(colours),
                norm=BoundaryNorm(levels, k), alpha=0.22)
    if len(np.unique(zz)) > 1:
        ax.contour(gx, gy, zz, levels=levels[1:-1], colors="0.25", linewidths=0.7)
    for c in range(k):
        at = y == c
        ax.scatter(X[at, 0], X[at, 1], s=12, color=colours[c], marker=MARKERS[c % len(MARKERS)],
                   edgecolors="white", linewidths=0.3,
                   label=str(classes[c]) if classes else str(c))
    names = list(feature_names or [])[:2]
    ax.set_xlabel(names[0] if len(names) == 2 else "feature 0")
    ax.set_ylabel(names[1] if len(names) == 2 else "feature 1")
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if k > 4 else {}
    ax.legend(title="class", fontsize=8, title_fontsize=8, markerscale=1.4, framealpha=0.9,
              **outside)
    ax.set_title(f"decision boundary: {title}" if title else "decision boundary", fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, path)


def confusion_matrix(confusion, classes, path, title: str | None = None):
    """The confusion matrix (rows: true class, columns: predicted) as a PNG: counts in
    the cells, shaded by the share of the true class's rows.

    Parameters
    ----------
    confusion : (classes, classes) int array
    classes : list of str
    path : str
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure (closed)
    """
    plt = _pyplot()
    counts = np.asarray(confusion)
    k = len(classes)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(2.2 + 0.6 * k, 16)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 30:  # beyond that the numbers no longer fit their cells
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black",
                        fontsize=10 if k <= 10 else 7)
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=45 if k > 4 else 0,
                  ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else float("nan")
    ax.set_title(f"{title + chr(10) if title else ''}accuracy {accuracy:.3f} "
                 f"({int(np.trace(counts))} of {int(total)})", fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, path)


def predicted_vs_true(y_true, y_pred, path, title: str | None = None,
                      target: str = "target"):
    """Predicted against true values of a regression, with the diagonal of perfect
    predictions, as a PNG.

    Parameters
    ----------
    y_true, y_pred : (N,)
    path : str
    title : str, optional
    target : str
        Names the axes.

    Returns
    -------
    matplotlib.figure.Figure (closed)
    """
    plt = _pyplot()
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.scatter(t, p, s=14, alpha=0.7, color=COLOURS[0], edgecolors="none")
    low, high = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([low, high], [low, high], color="0.3", linestyle="--", linewidth=1,
            label="predicted = true")
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.legend(loc="upper left", frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, path)
