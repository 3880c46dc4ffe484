"""Training progress in checkpoints: what ``fit(resume_from=...)`` restores."""

from __future__ import annotations

import numpy as np

from ..callbacks import History


class TrainState(dict):
    """Epoch counter, generator state and history for checkpoints (JSON-able).

    Built at the end of an epoch before the callbacks run; the epoch's own logs are
    read when the state is serialised, so additions by callbacks are included.
    """

    def __init__(self, epoch, rng, history, logs):
        super().__init__(epoch=epoch, rng=rng)
        self._history, self._logs = history, logs

    def to_json(self) -> dict:
        hist = {k: list(v) for k, v in self._history.history.items()}
        if len(self._history.epoch) < self["epoch"]:  # this epoch not appended yet
            for k, v in self._logs.items():
                hist.setdefault(k, []).append(v)
        return {"epoch": self["epoch"], "rng": self["rng"], "history": hist}


def check_resume(parts, loss, path) -> None:
    """The loss of a resumed run must be the checkpoint's: its history would otherwise mix
    two different quantities under one name."""
    saved = parts.loss
    if saved is not None and (saved.name, saved.config()) != (loss.name, loss.config()):
        raise ValueError(f"resume_from: {path} was trained with loss {saved.name} "
                         f"{saved.config()}, this fit asks for {loss.name} {loss.config()}; "
                         "pass the same loss (the optimiser and its state come from the "
                         "checkpoint)")


def read_checkpoint(model, path):
    """Load and check a training checkpoint against ``model``; changes nothing.

    Returns
    -------
    parts : gpunn.files.format.ModelParts
    """
    from ..files.format import read

    parts = read(path)
    mine = [lay.spec() | {"name": None} for lay in model.layers]
    theirs = [lay.spec() | {"name": None} for lay in parts.layers]
    if mine != theirs:
        raise ValueError(f"resume_from: {path} holds a different architecture "
                         f"({[t['type'] for t in theirs]} with configs that differ); build the "
                         "model as it was when the checkpoint was written")
    state = parts.training
    if state is not None and state.get("rng") is not None:
        try:  # check on a scratch generator: restoring must not fail half-way
            np.random.default_rng().bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise ValueError(f"resume_from: {path} has an unusable random-generator "
                             f"state ({exc})") from None
    if state is None or parts.optimizer is None:
        raise ValueError(f"resume_from: {path} is not a training checkpoint (it has no "
                         "epoch counter or optimiser state); write one with "
                         "gpunn.callbacks.ModelCheckpoint")
    return parts


def restore_checkpoint(model, parts):
    """Put a checkpoint's parameters, generator and preprocessing into ``model``.

    Returns
    -------
    optimizer, history, first_epoch
    """
    be = model.backend
    parts.put_into(model)
    state = parts.training
    if state.get("rng") is not None:
        be.random.set_state(state["rng"])
    if parts.preprocessor is not None:
        model.preprocessor = parts.preprocessor
    history = History()
    for i in range(len(next(iter(state["history"].values()), []))):
        history.append(i + 1, {k: v[i] for k, v in state["history"].items()})
    return parts.optimizer, history, int(state["epoch"]) + 1
