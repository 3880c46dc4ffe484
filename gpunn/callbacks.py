"""Training callbacks: history, the epoch line, progress bar, early stopping, checkpoints,
learning-rate schedules, ReduceLROnPlateau and a CSV log.

A callback is any subclass of :class:`Callback` passed to ``fit(callbacks=[...])``; it
overrides the hooks it needs. ``fit`` itself adds :class:`History` (what it returns),
:class:`EpochLogger` (``verbose=1``) and :class:`ProgressBar` (on a terminal). Hooks run on
the host between device work: the ones called per epoch see ``logs`` (floats, read once per
epoch); ``on_batch_end`` receives the running loss sum as a device array, so reading it (a
host sync) is the callback's choice.
"""

from __future__ import annotations

import csv
import inspect
import math
import numbers
import os
import sys
import time
import warnings

from .errors import flag


class Callback:
    """Base class; every hook is optional.

    Callbacks run in list order, except that those with a larger ``order`` run later:
    checkpoints (order 100) are written after the other callbacks have added to the logs.

    A callback that carries something from epoch to epoch (a best value, a count, a base
    rate) resets it in :meth:`on_train_begin`, so an object reused for another fit starts
    afresh, and returns it from :meth:`state_dict`: checkpoints keep it, and
    ``fit(resume_from=...)`` hands it back through :meth:`load_state` (after
    ``on_train_begin``), so a resumed run is the uninterrupted one.
    """

    order = 0

    def on_train_begin(self, model) -> None:
        """Before the first epoch (the optimiser is attached): reset what a previous fit
        left."""

    def state_dict(self) -> dict:
        """What a checkpoint keeps of this callback: JSON-able values (floats may be
        infinite) and, under ``"arrays"``, a list of arrays (written as file arrays, read
        back as NumPy arrays). Empty for a callback that carries nothing between
        epochs."""
        return {}

    def load_state(self, state: dict) -> None:
        """Put back what :meth:`state_dict` returned (a resumed fit, after
        :meth:`on_train_begin`); ``state`` comes from a file: check it."""

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
    partial : dict or None
        Set when Ctrl-C stopped an epoch that could not be undone (``on_divergence=
        "off"`` keeps no copy to go back to): ``{"epoch", "samples", "of"}``; the last
        entry is that partial epoch, its figures over the samples it ran.
    """

    order = 1000

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.partial: dict | None = None

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
        kind_name = "a number" if kind is numbers.Real else "an integer"
        raise ValueError(f"{what}: expected {kind_name}{bound}, got {value!r}")
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
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise ValueError(f"{self.owner}: monitor {self.monitor!r} is not logged; "
                             f"available: {', '.join(sorted(logs))}")
        return logs[self.monitor]

    def state(self, best: bool = True) -> dict:
        """What a checkpoint keeps: the quantity watched, its direction and the best value
        (a best value means nothing without the quantity it is the best of)."""
        return {"monitor": self.monitor, "mode": self.mode,
                **({"best": self.best} if best else {})}

    def load(self, state: dict, owner) -> None:
        """Take the best value from a checkpoint's ``state``, refusing one of another
        quantity or direction (a best train loss would judge the validation loss of the
        resumed epochs); states of files older than this check name neither."""
        theirs = (state.get("monitor", self.monitor), state.get("mode", self.mode))
        if theirs != (self.monitor, self.mode):
            raise ValueError(f"{type(owner).__name__}: the checkpoint's watched "
                             f"{theirs[0]!r} ({theirs[1]}), this one watches "
                             f"{self.monitor!r} ({self.mode}); its best value and counts "
                             "do not carry over: resume with the same monitor and mode, or "
                             "without resume_from to start afresh")
        self.best = _number(state, "best", owner)

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
        At the end, put back the parameters of the best epoch with the optimiser state,
        step and epoch counters of that moment (kept as a copy, on the device when it
        fits), so a file saved then resumes from the best epoch; prints which epoch it
        restored (``restored_epoch``).
    verbose : int, default 1
        1 prints (on rank 0) the epoch it stopped after, and which epoch's weights it
        restored; 0 prints nothing.
    """

    #: Print the line naming the restored epoch.
    announce = True

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False, verbose: int = 1):
        self.patience = _check(patience, "EarlyStopping patience", numbers.Integral, 0)
        self.verbose = _verbose(verbose, "EarlyStopping")
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
        self._monitor.reset()
        self.wait, self.best_epoch, self.stopped_epoch, self._best = 0, 0, 0, None
        self.restored_epoch, self._epoch = None, 0

    def on_epoch_begin(self, model, epoch):
        if self._best is _AT_START:  # resumed from the best epoch's own checkpoint
            from .training.recovery import Snapshot

            self._best = Snapshot(model, _stepped(model), self.best_epoch)

    def on_epoch_end(self, model, epoch, logs):
        self._epoch = epoch
        if self._monitor.improved(self._monitor.value(logs)):
            self.wait, self.best_epoch = 0, epoch
            self._keep_best(model, epoch)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                model.stop_training = True
                self.stopped_epoch = epoch

    def _keep_best(self, model, epoch: int) -> None:
        """Keep this epoch's parameters with the optimiser state, step and epoch counters
        that go with them: put back together, a later save is the checkpoint this epoch
        would have written (a resume from it continues from this epoch)."""
        if self.restore_best_weights:
            from .training.recovery import Snapshot

            self._best = Snapshot(model, _stepped(model), epoch)

    def on_train_end(self, model, history):
        best = self._best
        if best is _AT_START:  # resumed from the best epoch and no epoch ran: it is the model
            best = self._best = None
        if isinstance(best, dict):  # from the checkpoint resumed from: the model is known now
            from .training.recovery import Snapshot

            best = Snapshot.from_saved(model, _stepped(model), **best)
        last = (model.train_state or {}).get("epoch")
        if self.restore_best_weights and best is None and self.best_epoch and \
                self.best_epoch != last:
            # Resumed from a checkpoint of an older version, which kept no best weights.
            warnings.warn(f"{type(self).__name__}: the best epoch ({self.best_epoch}) came "
                          "before the checkpoint this fit resumed from, which does not keep "
                          f"its weights; the model keeps those of epoch {last}",
                          UserWarning, stacklevel=2)
        if best is not None and last is not None and best.epoch > last:
            # A roll-back (divergence, Ctrl-C) went back past it: that epoch is no longer
            # in the history, and its weights would disagree with it.
            warnings.warn(f"{type(self).__name__}: the best epoch ({best.epoch}) was undone "
                          f"by a roll-back to epoch {last}; keeping those weights",
                          UserWarning, stacklevel=2)
            best = None
        if self.stopped_epoch and self.announce and self.verbose and _root():
            print(f"{type(self).__name__}: stopped after epoch {self.stopped_epoch}: "
                  f"{self._monitor.monitor} did not improve for {self.wait} epoch"
                  f"{'s' * (self.wait != 1)} (best {self.best:.4g} at epoch "
                  f"{self.best_epoch})", flush=True)
        if self.restore_best_weights and best is not None and best.epoch != last:
            best.restore()
            self.restored_epoch = best.epoch
            if self.announce and self.verbose and _root():
                print(f"{type(self).__name__}: restored the weights of epoch {best.epoch} (best "
                      f"{self._monitor.monitor} {self.best:.4g}) with its optimiser state "
                      "and epoch counter", flush=True)

    def state_dict(self) -> dict:
        """Best value, counts and, with ``restore_best_weights``, the best epoch's copy:
        ``"arrays"`` (parameters and buffers, then the optimiser's arrays), its step
        counter and training state, so a resumed run can still put it back."""
        state = {**self._monitor.state(), "wait": self.wait, "best_epoch": self.best_epoch,
                 "stopped_epoch": self.stopped_epoch}
        best = self._best
        if best is _AT_START or (best is not None and self.best_epoch == self._epoch):
            # The best epoch is the one this state is saved with: the file's own weights
            # and optimiser are the copy (taken again when a resumed run starts).
            state["best_is_current"] = True
        elif best is not None:
            saved = best if isinstance(best, dict) else {
                "params": best.params, "state": best.state, "t": best.t,
                "train_state": best.train_state}
            kept = saved["train_state"]
            kept = kept.to_json(callbacks=False) if hasattr(kept, "to_json") else (
                {k: v for k, v in kept.items() if k != "callbacks"} if kept else kept)
            state.update(best_t=int(saved["t"]), best_train_state=kept,
                         best_params=len(saved["params"]),
                         arrays=list(saved["params"]) + list(saved["state"]))
        return state

    def load_state(self, state: dict) -> None:
        self._monitor.load(state, self)
        self.wait, self.best_epoch, self.stopped_epoch = (
            int(_number(state, k, self)) for k in ("wait", "best_epoch", "stopped_epoch"))
        if self.restore_best_weights and state.get("best_is_current") is True:
            self._best = _AT_START
        elif self.restore_best_weights and "arrays" in state:
            arrays, n = list(state["arrays"]), int(_number(state, "best_params", self))
            kept = state.get("best_train_state")
            if not 0 <= n <= len(arrays) or not isinstance(kept, (dict, type(None))):
                raise ValueError(f"{type(self).__name__}: the checkpoint's copy of the best "
                                 "epoch is malformed")
            # Made a snapshot at the end, when the model it fits is at hand.
            self._best = {"epoch": self.best_epoch, "params": arrays[:n],
                          "state": arrays[n:], "t": int(_number(state, "best_t", self)),
                          "train_state": kept}

    @property
    def best(self) -> float:
        return self._monitor.best


def _verbose(verbose, owner: str) -> int:
    if verbose not in (0, 1, True, False):
        raise ValueError(f"{owner} verbose: expected 0 or 1, got {verbose!r}")
    return int(verbose)


def _root() -> bool:
    """This process prints: rank 0 of several, or the only one."""
    from . import distributed

    return distributed.is_root()


#: EarlyStopping's best copy is the model as a resumed fit starts: taken then.
_AT_START = object()


def _stepped(model):
    """What the optimiser steps hold: under 16-bit training, the loss-scaling wrapper (its
    float32 master weights are state too); else the optimiser."""
    amp = getattr(model, "_amp", None)
    return amp if amp is not None else model.optimizer


def _number(state, key, owner) -> float:
    """``state[key]`` as a float, or a ValueError naming the callback (a file's content)."""
    value = state.get(key) if isinstance(state, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        raise ValueError(f"{type(owner).__name__}: the checkpoint's state has no usable "
                         f"{key!r} (got {value!r})")
    return float(value)


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

    def probes(self, epochs: int) -> list:
        """Further names to try before training: the one of the last epoch (the longest
        an ``{epoch}`` field makes), so a name too long fails before the first epoch."""
        last = self.path.format(epoch=epochs)
        return [last] if last != self.outputs()[0] else []

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

    def on_train_begin(self, model):
        self._monitor.reset()
        self.saved = []

    def state_dict(self) -> dict:
        return self._monitor.state() if self.save_best_only else {}

    def load_state(self, state: dict) -> None:
        if self.save_best_only:
            self._monitor.load(state, self)

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


def configured_lr(optimizer) -> float:
    """The optimiser's own learning rate: the one it was given, not the one a schedule set
    for its last epoch. A schedule records both on the optimiser (``scheduled_lr``: the
    base it started from and the rate it set); a rate changed since (by the user) is the
    optimiser's own again. Checkpoints keep it with the training state."""
    base, set_to = getattr(optimizer, "scheduled_lr", None) or (None, None)
    return base if base is not None and optimizer.lr == set_to else optimizer.lr


def _takes_two(schedule) -> bool:
    """Whether ``schedule(epoch, base_lr)`` binds (True when the signature is unknown)."""
    try:
        inspect.signature(schedule).bind(0, 1.0)
    except TypeError:
        return False
    except ValueError:  # some builtins have no signature: let the first call tell
        return True
    return True


class LearningRateSchedule(Callback):
    """Set the optimiser's learning rate at each epoch from ``schedule(epoch, base_lr)``.

    ``epoch`` counts from 0; ``base_lr`` is the optimiser's own rate (what it was given,
    not what a schedule set last; :func:`configured_lr`), taken afresh at each fit and
    kept in checkpoints, so a resumed run follows the same rates as an uninterrupted one.
    The rate used is logged as ``lr``.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, base_lr) -> lr``: ``epoch`` an int counted from 0, ``base_lr``
        a float; it returns a positive finite number. That it takes exactly these two
        arguments is checked here, before any training (Keras' ``LearningRateScheduler``
        passes ``(epoch, lr)``, the rate of the previous epoch: here the second argument
        is the base rate, so a schedule needs no state).

    Raises
    ------
    ValueError
        ``schedule`` is not callable with two arguments (here), or returns a rate that is
        not positive and finite (at the epoch it does).
    """

    def __init__(self, schedule):
        if not callable(schedule) or not _takes_two(schedule):
            raise ValueError(f"schedule: expected a function (epoch, base_lr) -> lr, got "
                             f"{schedule!r}")
        self.schedule = schedule
        self.base_lr = None

    def on_train_begin(self, model):
        self.base_lr = configured_lr(model.optimizer)

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr}

    def load_state(self, state: dict) -> None:
        self.base_lr = _number(state, "base_lr", self)

    def on_epoch_begin(self, model, epoch):
        lr = float(self.schedule(epoch - 1, self.base_lr))
        if not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"learning-rate schedule gave lr={lr!r} at epoch {epoch}; "
                             "expected a positive number")
        model.optimizer.lr = lr
        model.optimizer.scheduled_lr = (self.base_lr, lr)

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


class ReduceLROnPlateau(Callback):
    """Multiply the optimiser's learning rate by ``factor`` when ``monitor`` has not
    improved for ``patience`` epochs (Keras' callback of the same name).

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float in (0, 1), default 0.1
        ``new_lr = max(lr * factor, min_lr)``.
    patience : int >= 0, default 10
        Epochs without improvement before a reduction.
    min_delta : float >= 0, default 1e-4
        Smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}
        As for :class:`EarlyStopping`.
    cooldown : int >= 0, default 0
        Epochs to wait after a reduction before counting again.
    min_lr : float >= 0, default 0
        The rate is never reduced below this.
    verbose : int, default 0
        1 prints (on rank 0) each reduction.

    The rate is logged as ``lr``. Best value, counts and the rate set are kept in
    checkpoints (the rate also with the optimiser), so a resumed run reduces when the
    uninterrupted one would.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, mode: str = "auto", cooldown: int = 0,
                 min_lr: float = 0.0, verbose: int = 0):
        _check(factor, "ReduceLROnPlateau factor", low=0, low_open=True)
        if not factor < 1:
            raise ValueError(f"ReduceLROnPlateau factor: expected a number in (0, 1), got "
                             f"{factor!r} (it multiplies the rate)")
        self.factor = float(factor)
        self.patience = _check(patience, "ReduceLROnPlateau patience", numbers.Integral, 0)
        self.cooldown = _check(cooldown, "ReduceLROnPlateau cooldown", numbers.Integral, 0)
        self.min_lr = float(_check(min_lr, "ReduceLROnPlateau min_lr", low=0))
        _check(min_delta, "ReduceLROnPlateau min_delta", low=0)
        self._monitor = _Monitor("ReduceLROnPlateau", monitor, mode, float(min_delta))
        self.verbose = _verbose(verbose, "ReduceLROnPlateau")
        self.wait = self.cooldown_left = 0

    def config(self) -> dict:
        """What decides a reduction (the ranks of a distributed fit must agree on it)."""
        return {"monitor": self._monitor.monitor, "mode": self._monitor.mode,
                "factor": self.factor, "patience": self.patience,
                "min_delta": self._monitor.min_delta, "cooldown": self.cooldown,
                "min_lr": self.min_lr}

    def on_train_begin(self, model):
        self._monitor.reset()
        self.wait = self.cooldown_left = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    def load_state(self, state: dict) -> None:
        self._monitor.best = _number(state, "best", self)
        self.wait = int(_number(state, "wait", self))
        self.cooldown_left = int(_number(state, "cooldown_left", self))

    def on_epoch_end(self, model, epoch, logs):
        value = self._monitor.value(logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._monitor.improved(value):
            self.wait = 0
        elif self.cooldown_left == 0:
            self.wait += 1
            opt = model.optimizer
            if self.wait >= max(self.patience, 1) and opt.lr > self.min_lr:
                new = max(opt.lr * self.factor, self.min_lr)
                if self.verbose and _root():
                    print(f"ReduceLROnPlateau: epoch {epoch}: {self._monitor.monitor} did "
                          f"not improve for {self.wait} epochs; lr {opt.lr:.4g} -> "
                          f"{new:.4g}", flush=True)
                opt.lr = new
                self.wait, self.cooldown_left = 0, self.cooldown
        logs["lr"] = model.optimizer.lr

    @property
    def best(self) -> float:
        return self._monitor.best


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file: ``epoch`` then the logs' columns
    (loss, metrics, val_*, lr), as Keras' ``CSVLogger``.

    Parameters
    ----------
    path : str
        The file; its folder is created if missing, and it is tried before training.
    separator : str, default ","
    append : bool, default False
        Add to an existing file (no second header) instead of replacing it. A fit resumed
        from a checkpoint appends in any case, after the rows of the epochs it kept.

    Under several ranks only rank 0 writes. Each row is flushed as it is written, so the
    file can be followed during training.
    """

    #: After the other callbacks, so what they add to the logs (``lr``) is written, but
    #: before checkpoints (100), so a checkpoint counts this epoch's row as written.
    order = 99
    rank_zero_only = True

    def __init__(self, path, separator: str = ",", append: bool = False):
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(f"CSVLogger path: expected a file name, got {path!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger separator: expected one character, got "
                             f"{separator!r}")
        self.path, self.separator = os.fspath(path), separator
        self.append = flag(append, "CSVLogger append")
        self._file = self._writer = None
        self._keys: list | None = None
        self._resumed = False
        self.rows = 0

    def outputs(self) -> list:
        """The file this callback writes (fit checks its folder before training)."""
        return [self.path]

    def on_train_begin(self, model):
        self._close()
        self._keys, self._resumed, self.rows = None, False, 0

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state(self, state: dict) -> None:
        # A resumed fit continues the file the interrupted one wrote.
        self.rows = int(_number(state, "rows", self))
        self._resumed = True

    def on_epoch_end(self, model, epoch, logs):
        if self._writer is None:
            append = (self.append or self._resumed) and os.path.exists(self.path)
            if append:
                with open(self.path, newline="") as f:
                    header = next(csv.reader(f, delimiter=self.separator), None)
                self._keys = header[1:] if header else None
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._file = open(self.path, "a" if append else "w", newline="")
            self._writer = csv.writer(self._file, delimiter=self.separator,
                                      lineterminator="\n")
            if self._keys is None:
                self._keys = list(logs)
                self._writer.writerow(["epoch"] + self._keys)
        self._writer.writerow([epoch] + [_cell(logs.get(k)) for k in self._keys])
        self._file.flush()
        self.rows += 1

    def on_train_end(self, model, history):
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


def _cell(value) -> str:
    """A log value as CSV text: repr-exact floats, empty where an epoch lacks it."""
    return "" if value is None else repr(float(value))


#: The arguments of each Keras hook after ``self`` (what a Keras-style callback defines).
KERAS_HOOKS = {"on_train_begin": ("logs",), "on_train_end": ("logs",),
               "on_epoch_begin": ("epoch", "logs"), "on_epoch_end": ("epoch", "logs"),
               "on_batch_end": ("batch", "logs"), "on_train_batch_end": ("batch", "logs")}
#: gpunn's: what the same hooks take here.
GPUNN_HOOKS = {"on_train_begin": ("model",), "on_train_end": ("model", "history"),
               "on_epoch_begin": ("model", "epoch"), "on_epoch_end": ("model", "epoch", "logs"),
               "on_batch_end": ("model", "batch", "rows", "loss_sum")}


def hook_styles(cb) -> dict:
    """``{hook: "gpunn" or "keras"}`` for the hooks ``cb`` defines itself.

    A hook is Keras-style when its first argument is named as Keras names it (``epoch``,
    ``batch``, ``logs``), or when it takes Keras' arguments and not gpunn's.

    Raises
    ------
    TypeError
        A hook that takes neither, naming both signatures.
    """
    styles = {}
    for hook, keras in KERAS_HOOKS.items():
        fn = getattr(cb, hook, None)
        if fn is None or getattr(type(cb), hook, None) is getattr(Callback, hook, None):
            continue
        if not callable(fn):
            continue
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # no signature to read: take it as gpunn's
            styles[hook] = "gpunn"
            continue
        names = [p.name for p in sig.parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        ours = GPUNN_HOOKS.get(hook)
        if names[:1] and names[0] in ("epoch", "batch", "logs"):
            styles[hook] = "keras"
        elif ours is not None and _binds(sig, len(ours)):
            styles[hook] = "gpunn"
        elif _binds(sig, len(keras)) or _binds(sig, len(keras) - 1):
            styles[hook] = "keras"
        else:
            want = (f"gpunn's {hook}(self, {', '.join(ours)}) or " if ours else "")
            raise TypeError(f"{type(cb).__name__}.{hook}{sig}: expected {want}Keras' "
                            f"{hook}(self, {', '.join(keras)}=None)")
    return styles


def _binds(sig, n: int) -> bool:
    try:
        sig.bind(*range(n))
    except TypeError:
        return False
    return True


class KerasStyle(Callback):
    """Runs a callback written for Keras: its hooks get Keras' arguments (``epoch``
    counted from 0, a ``logs`` dict) and ``self.model`` is the model being trained
    (``self.model.stop_training = True`` stops, as in Keras). ``fit`` wraps such a
    callback itself; hooks written gpunn's way are called gpunn's way.

    Parameters
    ----------
    callback : object
        A :class:`Callback` subclass or any object with Keras-style hooks.
    styles : dict, optional
        :func:`hook_styles` of ``callback`` (worked out when not given).
    """

    def __init__(self, callback, styles: dict | None = None):
        self.callback = callback
        self.styles = hook_styles(callback) if styles is None else styles
        self.order = getattr(callback, "order", 0)

    def __getattr__(self, name):
        # What fit looks for on a callback (outputs, rank_zero_only, _monitor, ...) is
        # the wrapped one's.
        if name == "callback":
            raise AttributeError(name)
        return getattr(self.callback, name)

    def config(self):
        from .distributed.agreement import describe

        return describe(self.callback)

    def state_dict(self) -> dict:
        fn = getattr(self.callback, "state_dict", None)
        return fn() if callable(fn) else {}

    def load_state(self, state: dict) -> None:
        fn = getattr(self.callback, "load_state", None)
        if callable(fn):
            fn(state)

    def _call(self, hook, gpunn_args, keras_args):
        style = self.styles.get(hook)
        if style == "gpunn":
            getattr(self.callback, hook)(*gpunn_args)
        elif style == "keras":
            getattr(self.callback, hook)(*keras_args)

    def on_train_begin(self, model):
        # Keras' own Callback keeps the model behind set_model (its `model` a property).
        setter = getattr(self.callback, "set_model", None)
        if callable(setter):
            setter(model)
        else:
            self.callback.model = model
        self._call("on_train_begin", (model,), ({},))

    def on_epoch_begin(self, model, epoch):
        self._call("on_epoch_begin", (model, epoch), (epoch - 1, {}))

    def on_epoch_end(self, model, epoch, logs):
        self._call("on_epoch_end", (model, epoch, logs), (epoch - 1, logs))

    def on_train_end(self, model, history):
        self._call("on_train_end", (model, history),
                   ({k: v[-1] for k, v in history.history.items() if v},))


class _KerasStyleBatches(KerasStyle):
    """A :class:`KerasStyle` whose callback has a batch hook (the loop calls only those
    that do: reading the loss for Keras' ``logs`` is a host sync per step)."""

    def on_batch_end(self, model, batch, rows, loss_sum):
        if self.styles.get("on_batch_end") == "gpunn":
            self.callback.on_batch_end(model, batch, rows, loss_sum)
            return
        hook = "on_train_batch_end" if "on_train_batch_end" in self.styles else "on_batch_end"
        getattr(self.callback, hook)(batch, {"loss": float(loss_sum) / max(rows, 1)})


def keras_style(callback):
    """``callback`` as fit runs it: itself when its hooks are gpunn's, else wrapped in
    :class:`KerasStyle`; None when it has no hook at all."""
    styles = hook_styles(callback)
    if isinstance(callback, Callback) and "keras" not in styles.values():
        return callback
    if not styles:
        return None
    batches = {"on_batch_end", "on_train_batch_end"} & set(styles)
    return (_KerasStyleBatches if batches else KerasStyle)(callback, styles)


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
