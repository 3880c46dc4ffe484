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
    """

    #: Print the line naming the restored epoch.
    announce = True

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
        if self.restore_best_weights and best is not None and best.epoch != last:
            best.restore()
            self.restored_epoch = best.epoch
            if self.announce:
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
