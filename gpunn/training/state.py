"""Training progress in checkpoints: what ``fit(resume_from=...)`` restores."""

from __future__ import annotations

import numpy as np

from ..callbacks import History


class TrainState(dict):
    """Epoch counter, generator state, history, the optimiser's own learning rate and the
    callbacks' states for checkpoints (JSON-able): all a resumed run continues from.

    Built at the end of an epoch before the callbacks run; the epoch's own logs and the
    callbacks' states are read when the state is serialised, so what the callbacks do in
    that epoch is included, until :meth:`freeze` fixes the callbacks' states once they all
    ran (a state kept to go back to later then still says what they were at this epoch).
    """

    def __init__(self, epoch, rng, history, logs, callbacks=(), base_lr=None):
        super().__init__(epoch=epoch, rng=rng)
        self._history, self._logs = history, logs
        self._callbacks, self._states, self._base_lr = list(callbacks), None, base_lr

    def freeze(self) -> None:
        """Fix the callbacks' states as they are now (the end of this state's epoch)."""
        self._states = callback_states(self._callbacks)

    def to_json(self, callbacks: bool = True) -> dict:
        """The state as a file keeps it (a callback's ``"arrays"`` go into file arrays);
        ``callbacks=False`` leaves the callbacks' states out (a state kept inside one)."""
        epoch = self["epoch"]
        # Entries of later epochs (a state kept from an earlier epoch) are not this state's.
        hist = {k: list(v[:epoch]) for k, v in self._history.history.items()}
        if len(self._history.epoch) < epoch:  # this epoch not appended yet
            for k, v in self._logs.items():
                hist.setdefault(k, []).append(v)
        state = {"epoch": epoch, "rng": self["rng"], "history": hist, "base_lr": self._base_lr}
        if callbacks:
            state["callbacks"] = self._states if self._states is not None else \
                callback_states(self._callbacks)
        return state


def callback_keys(callbacks) -> list:
    """``(key, callback)`` pairs: the class name, ``#n`` added for its n-th repeat, so the
    callbacks of a resumed fit find theirs in a checkpoint written with the same list."""
    seen: dict[str, int] = {}
    pairs = []
    for cb in callbacks:
        name = type(cb).__name__
        n = seen[name] = seen.get(name, -1) + 1
        pairs.append((name if n == 0 else f"{name}#{n}", cb))
    return pairs


def callback_states(callbacks) -> dict:
    """The non-empty :meth:`~gpunn.callbacks.Callback.state_dict` of each callback."""
    return {key: state for key, cb in callback_keys(callbacks) if (state := cb.state_dict())}


def load_callback_states(callbacks, states: dict, path) -> None:
    """Hand each callback its state from a checkpoint (after ``on_train_begin``)."""
    for key, cb in callback_keys(callbacks):
        if key in states:
            try:
                cb.load_state(states[key])
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"resume_from: {path}: {exc}") from None


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
    _same_target_scaling(model, parts, path)
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


def _same_target_scaling(model, parts, path) -> None:
    """A resumed run must learn the targets in the units the checkpoint learnt them in:
    fit standardises ``y`` with the model's target scaler before the checkpoint is
    restored, so a scaler is never taken over silently, only checked."""
    mine, theirs = getattr(model, "target_scaler", None), parts.target_scaler
    if mine is None and theirs is None:
        return
    if mine is not None and theirs is not None and np.array_equal(
            mine.mean, theirs.mean) and np.array_equal(mine.scale, theirs.scale):
        return
    said = {True: "standardised targets", False: "targets as given"}
    raise ValueError(f"resume_from: {path} was trained on {said[theirs is not None]}, this "
                     f"model has {said[mine is not None]}"
                     + (" with other statistics" if mine is not None and theirs is not None
                        else "")
                     + "; set model.target_scaler to the checkpoint's (gpunn.load(path)"
                     ".target_scaler) before resuming")


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
    optimizer = parts.optimizer
    # The model is at the checkpoint's epoch: a roll-back to the first resumed epoch's
    # start, or a save before another epoch ends, holds this state, not an older one.
    model.train_state = state
    if state.get("base_lr") is not None:
        # The rate a schedule starts from is the optimiser's own, not the one it set last.
        optimizer.scheduled_lr = (float(state["base_lr"]), optimizer.lr)
    return optimizer, history, int(state["epoch"]) + 1
