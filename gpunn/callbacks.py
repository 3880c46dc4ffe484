"""Training callbacks: history, the epoch line, progress bar, early stopping, checkpoints,
learning-rate schedules.

A callback is any subclass of :class:`Callback` passed to ``fit(callbacks=[...])``; it
overrides the hooks it needs. ``fit`` itself adds :class:`History` (what it returns),
:class:`EpochLogger` (``verbose=1``) and :class:`ProgressBar` (on a terminal). Hooks run on
the host between device work: the ones called per epoch see ``logs`` (floats, read once per
epoch); ``on_batch_end`` receives the running loss sum as a device array, so reading it (a
host sync) is the callback's choice.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time

from .errors import flag


class Callback:
    """Base class; every hook is optional.

    Callbacks run in list order, except that those with a larger ``order`` run later:
    checkpoints (order 100) are written after the other callbacks have added to the logs.
    """

    order = 0

    def on_train_begin(self, model) -> None:
        """Before the first epoch (the optimiser is attached)."""

    def on_epoch_begin(self, model, epoch: int) -> None:
        """Before epoch ``epoch`` (counted from 1)."""

    def on_batch_end(self, model, batch: int, rows: int, loss_sum) -> None:
        """After each step: ``rows`` samples seen this epoch, ``loss_sum`` on the device."""

    def on_epoch_end(self, model, epoch: int, logs: dict) -> None:
        """After an epoch; ``logs`` holds loss, metrics and val_*; may be extended. Set
        ``model.stop_training = True`` to stop."""

    def on_train_end(self, model, history) -> None:
        """After the last epoch (or an early stop)."""


class History(Callback):
    """What ``fit`` returns: per-epoch values, Keras style.

    Runs after the other callbacks, so what they add to ``logs`` (``lr``) is kept.

    Attributes
    ----------
    history : dict of str -> list of float
        ``"loss"``, each metric, and ``"val_"`` versions when validation data is given.
    epoch : list of int
    """

    order = 1000

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, model, epoch, logs):
        self.append(epoch, logs)

    def append(self, epoch: int, values: dict) -> None:
        self.epoch.append(epoch)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


class EpochLogger(Callback):
    """One line per epoch: the logs, samples/s and seconds (``fit(verbose=1)``)."""

    order = 1001

    def __init__(self, n_rows: int, epochs: int, file=None):
        self.n_rows, self.epochs, self.file = n_rows, epochs, file

    def on_epoch_begin(self, model, epoch):
        self._start = time.perf_counter()

    def on_epoch_end(self, model, epoch, logs):
        elapsed = time.perf_counter() - self._start
        line = "  ".join(f"{k} {v:.4g}" if k in ("lr", "skipped") else f"{k} {v:.4f}"
                         for k, v in logs.items())
        print(f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}  {line}  "
              f"{self.n_rows / max(elapsed, 1e-9):,.0f} samples/s  {elapsed:.2f} s",
              file=self.file or sys.stdout, flush=True)


def _check(value, what, kind=numbers.Real, low=None, low_open=False):
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if low_open else '>='} {low}"
        raise ValueError(f"{what}: expected a {'number' if kind is numbers.Real else 'integer'}"
                         f"{bound}, got {value!r}")
    return value


class _Monitor:
    """Tracks the best value of one logged quantity."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner} mode: expected 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(monitor, str):
            raise ValueError(f"{owner} monitor: expected a log name, got {monitor!r}")
        if mode == "auto":
            mode = "max" if any(k in monitor for k in ("acc", "r2")) else "min"
        self.owner, self.monitor, self.mode, self.min_delta = owner, monitor, mode, min_delta
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise ValueError(f"{self.owner}: monitor {self.monitor!r} is not logged; "
                             f"available: {', '.join(sorted(logs))}")
        return logs[self.monitor]

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
    patience : int, default 5
    min_delta : float, default 0
        Smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}
        ``auto``: maximise accuracy / R², minimise everything else.
    restore_best_weights : bool, default False
        At the end, put back the parameters of the best epoch (kept as a device copy).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        self.patience = _check(patience, "EarlyStopping patience", numbers.Integral, 0)
        _check(min_delta, "EarlyStopping min_delta", low=0)
        self._monitor = _Monitor("EarlyStopping", monitor, mode, float(min_delta))
        self.restore_best_weights = flag(restore_best_weights,
                                         "EarlyStopping restore_best_weights")

    def config(self) -> dict:
        """What decides the stop (the ranks of a distributed fit must agree on it)."""
        return {"monitor": self._monitor.monitor, "mode": self._monitor.mode,
                "patience": self.patience, "min_delta": self._monitor.min_delta,
                "restore_best_weights": self.restore_best_weights}

    def on_train_begin(self, model):
        self._monitor.best = math.inf if self._monitor.mode == "min" else -math.inf
        self.wait, self.best_epoch, self.stopped_epoch, self._best = 0, 0, 0, None

    def on_epoch_end(self, model, epoch, logs):
        if self._monitor.improved(self._monitor.value(logs)):
            self.wait, self.best_epoch = 0, epoch
            if self.restore_best_weights:
                self._best = model.store.snapshot(on_device=True)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                model.stop_training = True
                self.stopped_epoch = epoch

    def on_train_end(self, model, history):
        if self.restore_best_weights and self._best is not None:
            model.store.restore(self._best)

    @property
    def best(self) -> float:
        return self._monitor.best


class ModelCheckpoint(Callback):
    """Save the model every ``every`` epochs, or only when ``monitor`` improves.

    Parameters
    ----------
    path : str
        May contain ``{epoch}``, e.g. ``"ckpt/model-{epoch:03d}.npz"``. Missing folders
        are created; writes are atomic.
    every : int, default 1
    save_best_only : bool, default False
    monitor, mode : as for :class:`EarlyStopping`
    """

    order = 100
    #: Under several ranks only rank 0 writes checkpoints (the others hold the same model).
    rank_zero_only = True

    def outputs(self) -> list:
        """A file this callback will write (fit checks its folder before training)."""
        return [self.path.format(epoch=1)]

    def __init__(self, path: str, every: int = 1, save_best_only: bool = False,
                 monitor: str = "val_loss", mode: str = "auto"):
        if not isinstance(path, str) or not path:
            raise ValueError(f"ModelCheckpoint path: expected a file name, got {path!r}")
        try:
            path.format(epoch=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint path {path!r}: the only placeholder is "
                             f"{{epoch}} (e.g. 'ckpt/model-{{epoch:03d}}.npz'); {exc!r}") \
                from None
        self.path = path
        self.every = _check(every, "ModelCheckpoint every", numbers.Integral, 0, True)
        self.save_best_only = flag(save_best_only, "ModelCheckpoint save_best_only")
        self._monitor = _Monitor("ModelCheckpoint", monitor, mode)
        self.watches_logs = self.save_best_only  # monitor is only read for best-only
        self.saved: list[str] = []

    def on_epoch_end(self, model, epoch, logs):
        if self.save_best_only:
            if not self._monitor.improved(self._monitor.value(logs)):
                return
        elif epoch % self.every:
            return
        path = self.path.format(epoch=epoch)
        # fit made the first epoch's folder; an {epoch} in a folder name, or a folder
        # removed during training, needs it again at each write.
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        model.save(path)
        self.saved.append(path)


class LearningRateSchedule(Callback):
    """Set the optimiser's learning rate at each epoch from ``schedule(epoch, base_lr)``.

    ``epoch`` counts from 0; ``base_lr`` is the optimiser's rate when training starts.
    The rate used is logged as ``lr``.
    """

    def __init__(self, schedule):
        if not callable(schedule):
            raise ValueError(f"schedule: expected a function (epoch, base_lr) -> lr, got "
                             f"{schedule!r}")
        self.schedule = schedule
        self.base_lr = None

    def on_train_begin(self, model):
        if self.base_lr is None:
            self.base_lr = model.optimizer.lr

    def on_epoch_begin(self, model, epoch):
        lr = float(self.schedule(epoch - 1, self.base_lr))
        if not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"learning-rate schedule gave lr={lr!r} at epoch {epoch}; "
                             "expected a positive number")
        model.optimizer.lr = lr

    def on_epoch_end(self, model, epoch, logs):
        logs["lr"] = model.optimizer.lr


class StepDecay(LearningRateSchedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, step_size: int = 10, gamma: float = 0.1):
        _check(step_size, "StepDecay step_size", numbers.Integral, 0, True)
        _check(gamma, "StepDecay gamma", low=0, low_open=True)
        super().__init__(lambda e, lr0: lr0 * gamma ** (e // step_size))


class ExponentialDecay(LearningRateSchedule):
    """``lr = base_lr * gamma ** epoch``."""

    def __init__(self, gamma: float = 0.95):
        _check(gamma, "ExponentialDecay gamma", low=0, low_open=True)
        super().__init__(lambda e, lr0: lr0 * gamma ** e)


class CosineDecay(LearningRateSchedule):
    """Cosine annealing from ``base_lr`` to ``min_lr`` over ``epochs`` epochs."""

    def __init__(self, epochs: int, min_lr: float = 0.0):
        _check(epochs, "CosineDecay epochs", numbers.Integral, 0, True)
        _check(min_lr, "CosineDecay min_lr", low=0)

        def cosine(e, lr0):
            t = min(e, epochs) / epochs
            return max(min_lr + 0.5 * (lr0 - min_lr) * (1 + math.cos(math.pi * t)), 1e-12)

        super().__init__(cosine)


class ProgressBar(Callback):
    """A per-epoch progress bar (tqdm): batches done, running loss, samples/s.

    The running loss is read from the device at most every ``refresh`` seconds.
    """

    def __init__(self, n_rows: int, batch_size: int, epochs: int, refresh: float = 0.25,
                 file=None):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.n_rows, self.batch_size, self.epochs = n_rows, batch_size, epochs
        self.refresh, self.file = refresh, file or sys.stderr
        self.bar = None

    def on_epoch_begin(self, model, epoch):
        # "12/25 batches [00:01<00:02, loss 0.4321  312,772 samples/s]": units after a space,
        # no batches/s (samples/s says the same, comparably across batch sizes).
        self.bar = self._tqdm(total=-(-self.n_rows // self.batch_size),
                              desc=f"epoch {epoch}/{self.epochs}", leave=False,
                              file=self.file, dynamic_ncols=True, bar_format=(
                                  "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                  "batches [{elapsed}<{remaining}{postfix}]"))
        self._start = self._last = time.perf_counter()
        self._done = 0

    def on_batch_end(self, model, batch, rows, loss_sum):
        now = time.perf_counter()
        self.bar.update(batch + 1 - self._done)
        self._done = batch + 1
        if now - self._last >= self.refresh:
            self._last = now
            self.bar.set_postfix_str(f"loss {float(loss_sum) / rows:.4f}  "
                                     f"{rows / (now - self._start):,.0f} samples/s")

    def on_epoch_end(self, model, epoch, logs):
        self.bar.close()
