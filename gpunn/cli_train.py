"""What ``gpunn train`` does around ``fit``: the lines it prints, keeping the best epoch (the
one it saves) and its pictures."""

from __future__ import annotations

import os

from . import losses as _losses
from .callbacks import EarlyStopping


class BestEpoch(EarlyStopping):
    """Keeps the weights of the best epoch by the monitored metric and puts them back at
    the end; stops early only when given a patience.

    The metric is the loss's own (accuracy for cross-entropies, MAE otherwise), on the
    validation rows, or on the training rows when there are none.
    """

    def __init__(self, loss: str, validating: bool, patience: int | None, epochs: int):
        metrics = _losses.get(loss).default_metrics
        self.metric = metrics[0] if metrics else "loss"
        self.key = f"val_{self.metric}" if validating else self.metric
        self.patience_given, self.epochs = patience, epochs
        super().__init__(monitor=self.key, patience=epochs if patience is None else patience,
                         restore_best_weights=True)

    @property
    def where(self) -> str:
        """Which rows the monitored value is measured on, when not the validation rows."""
        return "" if self.key.startswith("val_") else " on the training rows (--val-split 0)"

    def summary(self, hist, elapsed: float, device: str) -> str:
        """The ``done:`` line."""
        epochs = len(hist.epoch)
        text = f"done: {epochs} epoch{'s' if epochs != 1 else ''}"
        if self.stopped_epoch:
            text += f" of {self.epochs} (stopped early, --patience {self.patience_given})"
        text += f" in {elapsed:.1f} s on {device}"
        if self.best_epoch:
            text += f"; best {self.key} {self.best:.4f} at epoch {self.best_epoch}{self.where}"
        return text

    def saved(self, path: str, hist) -> str:
        """The ``saved:`` line: which epoch's weights the file holds."""
        last = len(hist.epoch)
        if not self.best_epoch:  # no epoch had a finite value
            return f"saved: {path} (epoch {last}, the last: no epoch had a finite {self.key})"
        rows = "" if self.key.startswith("val_") else " on the training rows"
        return f"saved: {path} (epoch {self.best_epoch} of {last}, best {self.key}{rows})"


def plots(folder, model, hist, data) -> None:
    """The history figure, and the decision boundary of 2-D classification data."""
    from . import plot

    os.makedirs(folder, exist_ok=True)
    written = [os.path.join(folder, "history.png")]
    plot.history(hist, written[0])
    if data.X.shape[1] == 2 and data.task != "regression":
        written.append(os.path.join(folder, "decision_boundary.png"))
        plot.decision_boundary(model, data.X, data.y, written[-1], data.classes)
    print(f"plots: {', '.join(written)}")
