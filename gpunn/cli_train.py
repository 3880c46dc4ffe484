"""What ``gpunn train`` does around ``fit``: the lines it prints, keeping the best epoch (the
one it saves), its learning-rate schedules, what it says when training diverges, and its
pictures."""

from __future__ import annotations

import argparse
import math

import numpy as np

from . import callbacks as _callbacks
from . import evaluation as _evaluation
from . import losses as _losses
from .callbacks import EarlyStopping

#: Columns the lines printed before training fit in.
WIDTH = 100


def clip(text: str, width: int) -> str:
    """``text`` shortened in the middle to at most ``width`` characters."""
    if len(text) <= width:
        return text
    keep = max(width - 3, 2)
    return text[:(keep + 1) // 2] + "..." + text[len(text) - keep // 2:]


def _network(widths) -> list[str]:
    """Ways to write the layer widths, longest first: 784-512-512-10, 784-512x2-10, and
    784-...-10, 2 hidden layers. Given strings (a network from --arch describes itself),
    those."""
    if widths and isinstance(widths[0], str):
        return list(widths)
    runs: list[list[int]] = []
    for w in widths:
        if runs and runs[-1][0] == w:
            runs[-1][1] += 1
        else:
            runs.append([w, 1])
    return ["-".join(map(str, widths)),
            "-".join(f"{w}x{n}" if n > 1 else str(w) for w, n in runs),
            f"{widths[0]}-...-{widths[-1]}, {len(widths) - 2} hidden layers"]


def header(name, data, n_train: int, n_val: int, widths, n_params: int, loss: str,
           optimizer: str, lr: float) -> list[str]:
    """The data and network lines, each at most :data:`WIDTH` columns (a long file name
    puts the data's description on a line of its own)."""
    targets = 1 if data.y.ndim == 1 else data.y.shape[1]
    kind = f"{len(data.classes)} classes" if data.classes else \
        f"{targets} target{'s' if targets != 1 else ''}"
    about = (f"({n_train} train / {n_val} validation rows, {data.X.shape[1]} features, "
             f"{data.task}, {kind})")
    lines = [f"data: {name} {about}"]
    if len(lines[0]) > WIDTH:
        lines = ["data: " + clip(name, WIDTH - 6), "      " + about]
    train = f"loss {loss}, {optimizer} lr {lr:g}"
    nets = [f"network: {n} ({n_params:,} parameters)" for n in _network(widths)]
    one = next((n for n in nets if len(n) + 2 + len(train) <= WIDTH), None)
    if one:
        return lines + [f"{one}, {train}"]
    return lines + [next((n for n in nets if len(n) <= WIDTH), nets[-1]), "         " + train]


class BestEpoch(EarlyStopping):
    """Keeps the weights of the best epoch by the monitored metric and puts them back at
    the end; stops early only when given a patience.

    The metric is the loss's own (accuracy for cross-entropies, MAE otherwise), on the
    validation rows, or on the training rows when there are none.
    """

    announce = False  # the saved: line names the epoch

    def __init__(self, loss: str, validating: bool, patience: int | None, epochs: int,
                 standardised: bool = False):
        metrics = _losses.get(loss).default_metrics
        self.metric = metrics[0] if metrics else "loss"
        self.key = f"val_{self.metric}" if validating else self.metric
        self.patience_given, self.epochs = patience, epochs
        # The loss and metric are those of standardised targets (see scaling_note).
        self.units = " (standardised)" if standardised else ""
        super().__init__(monitor=self.key, patience=epochs if patience is None else patience,
                         restore_best_weights=True)

    def on_train_begin(self, model):
        super().on_train_begin(model)
        self._best_loss = math.inf

    def state_dict(self) -> dict:
        return super().state_dict() | {"best_loss": self._best_loss}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        loss = state.get("best_loss")
        self._best_loss = float(loss) if isinstance(loss, (int, float)) else math.inf

    def on_epoch_end(self, model, epoch, logs):
        """A tie in the metric (common for accuracy on a small validation set) goes to the
        epoch with the lower loss on the same rows: the first epoch to reach 98.8% is
        rarely the best model to keep. Patience still counts metric improvements only."""
        loss = logs.get("val_loss" if self.key.startswith("val_") else "loss", math.inf)
        value = self._monitor.value(logs)
        tie = (self.best_epoch and self.metric != "loss" and value == self._monitor.best
               and loss < self._best_loss)
        super().on_epoch_end(model, epoch, logs)
        if self.best_epoch == epoch or tie:
            if tie:
                self.best_epoch = epoch
                self._keep_best(model, epoch)
            self._best_loss = loss

    @property
    def where(self) -> str:
        """Which rows the monitored value is measured on, when not the validation rows."""
        return "" if self.key.startswith("val_") else " on the training rows (--val-split 0)"

    def summary(self, hist, elapsed: float, device: str) -> str:
        """The ``done:`` line."""
        epochs = len(hist.epoch)
        text = f"done: {epochs} epoch{'s' if epochs != 1 else ''}"
        if self.stopped_epoch and epochs < self.epochs:  # not when the last epoch stopped
            text += f" of {self.epochs} (stopped early, --patience {self.patience_given})"
        text += f" in {elapsed:.1f} s on {device}"
        if self.best_epoch:
            text += (f"; best {self.key} {self.best:.4f}{self.units} at epoch "
                     f"{self.best_epoch}{self.where}")
        return text

    def saved(self, path: str, hist) -> str:
        """The ``saved:`` line: which epoch's weights the file holds."""
        last = len(hist.epoch)
        if not self.best_epoch:  # no epoch had a finite value
            return f"saved: {path} (epoch {last}, the last: no epoch had a finite {self.key})"
        rows = "" if self.key.startswith("val_") else " on the training rows"
        return f"saved: {path} (epoch {self.best_epoch} of {last}, best {self.key}{rows})"


#: The figures of ``--plot``, the main one first (:func:`gpunn.plot.figure_paths`).
FIGURES = ["history", "decision_boundary"]


def plots(target, model, hist, data, title: str, best: BestEpoch, file=None) -> None:
    """The history figure, and the decision boundary of 2-D classification data, where
    ``--plot target`` (a folder or a .png file) puts them."""
    import os

    from . import plot

    paths = plot.figure_paths(target, FIGURES)
    os.makedirs(os.path.dirname(paths[0]) or ".", exist_ok=True)
    written = [paths[0]]
    plot.history(hist, paths[0], title=title, best_epoch=best.best_epoch or None,
                 monitor=best.key)
    if data.X.shape[1] == 2 and data.task != "regression":
        written.append(paths[1])
        plot.decision_boundary(model, data.X, data.y, paths[1], data.classes,
                               feature_names=data.feature_names, title=title)
    print(f"plots: {', '.join(written)}", file=file)


LR_SCHEDULE_HELP = (
    "how the learning rate changes: step:EVERY:FACTOR (multiply by FACTOR every EVERY "
    "epochs, e.g. step:10:0.5), exp:FACTOR (multiply by FACTOR each epoch, e.g. exp:0.95), "
    "cosine or cosine:MIN_LR (cosine annealing from --lr to MIN_LR over --epochs), "
    "plateau:PATIENCE:FACTOR (multiply by FACTOR after PATIENCE epochs without a lower "
    "validation loss, the training loss with --val-split 0, e.g. plateau:5:0.5); default: "
    "constant")

#: Each --lr-schedule kind: its numbers' names and types.
_SCHEDULES = {"step": (("EVERY", int), ("FACTOR", float)), "exp": (("FACTOR", float),),
              "cosine": (("MIN_LR", float),), "plateau": (("PATIENCE", int),
                                                          ("FACTOR", float))}


def lr_schedule(text: str):
    """``--lr-schedule``'s value as ``(kind, numbers)``, checked (argparse type: its
    errors name the flag)."""
    kind, *parts = text.strip().lower().split(":")
    fields = _SCHEDULES.get(kind)
    if fields is None:
        raise argparse.ArgumentTypeError(f"unknown schedule {kind!r} in {text!r}; expected "
                                         "step:EVERY:FACTOR, exp:FACTOR, cosine[:MIN_LR] or "
                                         "plateau:PATIENCE:FACTOR")
    optional = kind == "cosine"
    if len(parts) != len(fields) and not (optional and not parts):
        form = f"{kind}:" + ":".join(name for name, _ in fields)
        raise argparse.ArgumentTypeError(f"expected {form}{' or cosine' if optional else ''}"
                                         f", got {text!r}")
    try:
        numbers = tuple(cast(part) for part, (_, cast) in zip(parts, fields))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers after {kind}: (e.g. "
                                         f"{LR_SCHEDULE_HELP.split('e.g. ')[1].split(')')[0]}"
                                         f"), got {text!r}") from None
    for (name, _), value in zip(fields, numbers):
        # Checked here, in the syntax's own names (the callbacks' errors name Python's).
        low, why = {"EVERY": (1, "a positive integer"), "PATIENCE": (0, "an integer >= 0"),
                    "MIN_LR": (0, "a number >= 0")}.get(name, (None, "a number > 0"))
        bad = (not math.isfinite(value) or value < low) if low is not None else \
            not (math.isfinite(value) and value > 0)
        if kind == "plateau" and name == "FACTOR" and value >= 1:
            bad, why = True, "a number in (0, 1)"
        if bad:
            raise argparse.ArgumentTypeError(f"{name}: expected {why}, got {value!r} (in "
                                             f"{text!r})")
    return kind, numbers


def _make_schedule(spec, epochs: int, validating: bool):
    kind, numbers = spec
    if kind == "step":
        return _callbacks.StepDecay(step_size=numbers[0], gamma=numbers[1])
    if kind == "exp":
        return _callbacks.ExponentialDecay(gamma=numbers[0])
    if kind == "cosine":
        return _callbacks.CosineDecay(epochs=epochs, min_lr=numbers[0] if numbers else 0.0)
    return _callbacks.ReduceLROnPlateau(monitor="val_loss" if validating else "loss",
                                        factor=numbers[1], patience=numbers[0])


def schedule_callbacks(spec, epochs: int, validating: bool) -> list:
    """The callback of ``--lr-schedule`` (none without it); a plateau watches the
    validation loss, or the training loss with ``--val-split 0``."""
    return [] if spec is None else [_make_schedule(spec, epochs, validating)]


def diverged_message(exc, args) -> str:
    """What a divergence says on the command line: where, what was kept, and what to try
    among the flags of ``gpunn train`` (Python's message names fit's arguments)."""
    tries = [f"a lower --lr (now {args.lr:g})"]
    if args.clip_norm is None:
        tries.append("--clip-norm 1")
    else:
        tries.append(f"a lower --clip-norm (now {args.clip_norm:g})")
    tries.append("--on-divergence skip")
    kept = ("; --save keeps the best epoch before it" if args.save and exc.epoch > 1
            else "")
    return (f"training diverged: the loss became NaN or infinite at epoch {exc.epoch}, "
            f"step {exc.step}{kept}. Try {', '.join(tries[:-1])} or {tries[-1]}")


def title(name: str, widths, optimizer: str, lr: float) -> str:
    """What the pictures are of: "moons, 2-25-50-50-25-1, adam lr 0.01"."""
    net = next((n for n in _network(widths) if len(n) <= 40), clip(_network(widths)[-1], 40))
    return f"{clip(name, 40)}, {net}, {optimizer} lr {lr:g}"


#: Epochs without --epochs: at least EPOCHS, enough for STEPS optimiser steps, at most
#: MAX_EPOCHS. 30 epochs of iris (120 training rows) are 60 steps, far from converged;
#: early stopping by default would not help there, as a 30-row validation set stops it
#: on noise (patience 20 stopped iris at 87% validation accuracy, 200 epochs reach 90%,
#: scikit-learn's MLP's score on the same rows).
EPOCHS, STEPS, MAX_EPOCHS = 30, 1000, 200


def default_epochs(n_train: int, batch_size: int) -> int:
    """The epochs of a run without ``--epochs``: see :data:`STEPS`."""
    per_epoch = max(1, -(-n_train // batch_size))
    return int(min(MAX_EPOCHS, max(EPOCHS, -(-STEPS // per_epoch))))


#: The last epochs whose training loss :func:`advice` looks at, and the fall per epoch
#: (a fraction) over them that means the run stopped while still learning.
RECENT_EPOCHS, STILL_FALLING = 5, 0.01
#: A validation R² at or below this is no better than predicting the mean.
TRIVIAL_R2 = 0.05


def scaling_note(scaler, target: str) -> str:
    """The ``note:`` saying that the regression target is learnt standardised."""
    mean, scale = scaler.mean, scaler.scale
    about = (f"mean {mean[0]:.6g}, standard deviation {scale[0]:.6g}" if mean.size == 1
             else f"{mean.size} targets, each by its own mean and standard deviation")
    return (f"target {target!r} standardised ({about}): the loss and metric of the epoch "
            "lines are in standardised units; the scores after training, predict and the "
            "ONNX export are in the target's units (--no-standardize: learn it as it is)")


def regression_scores(model, X, y) -> dict:
    """MAE, RMSE and R² of ``model`` on ``(X, y)``, in the target's own units (through
    ``model.predict``, which undoes a target scaling)."""
    from .backend import to_numpy

    pred = np.asarray(to_numpy(model.predict(X)), dtype=np.float64)
    return _evaluation.regression_report(y, pred)


def scores_line(label: str, scores: dict) -> str:
    """``validation: MAE 41.2, RMSE 52.9, R² 0.514 (in the target's units)``."""
    return (f"{label}: MAE {scores['mae']:.6g}, RMSE {scores['rmse']:.6g}, "
            f"R² {scores['r2']:.3f} (in the target's units)")


def advice(hist, best: BestEpoch, val_scores: dict | None,
           val_labels=None) -> list[str]:
    """Warnings about a run that ended while its loss still fell fast, or whose model is
    no better than a constant: a regression's validation R² (``val_scores``) near 0, or
    a validation accuracy no higher than the share of the most frequent class among
    ``val_labels`` (class indices, or None)."""
    lines = []
    # The loss of the rows the best epoch is judged on: a training loss that falls while
    # the validation loss rises is overfitting, not a run cut short.
    key = "val_loss" if best.key.startswith("val_") else "loss"
    loss = [v for v in hist.history.get(key, []) if math.isfinite(v)]
    epochs = len(hist.epoch)
    stopped = best.stopped_epoch and epochs < best.epochs
    recent = best.best_epoch and best.best_epoch > epochs - RECENT_EPOCHS
    if not stopped and recent and len(loss) > RECENT_EPOCHS and loss[-1] > 0 and \
            loss[-1 - RECENT_EPOCHS] > loss[-1]:
        fall = 1 - (loss[-1] / loss[-1 - RECENT_EPOCHS]) ** (1 / RECENT_EPOCHS)
        if fall > STILL_FALLING:
            what = "validation" if key == "val_loss" else "training"
            lines.append(f"the {what} loss was still falling {100 * fall:.1f}% per epoch "
                         f"over the last {RECENT_EPOCHS} epochs: the model has not "
                         f"converged; train longer (--epochs {2 * best.epochs}, with "
                         "--patience 10 to stop once it stops improving)")
    if val_scores is not None and val_scores["r2"] <= TRIVIAL_R2:
        lines.append(f"validation R² {val_scores['r2']:.3f}: no better than predicting the "
                     "mean of the target for every row. Check that the features relate to "
                     "the target, train longer, or try a lower --lr"
                     + ("" if best.units else "; targets far from 0 or 1 in size learn "
                        "badly without standardisation (drop --no-standardize)"))
    labels = None if val_labels is None else np.asarray(val_labels)
    if labels is not None and labels.ndim == 1 and labels.size and \
            best.key == "val_accuracy" and best.best_epoch:
        share = float(np.max(np.unique(labels, return_counts=True)[1])) / labels.size
        if best.best <= share + 1e-9:
            lines.append(f"validation accuracy {best.best:.4f}: no better than always "
                         f"predicting the most frequent class ({share:.4f} of the rows). "
                         "Check that the features relate to the target, train longer, or "
                         "try a lower --lr")
    return lines
