"""Exceptions raised by gpunn.

Every error a user can trigger with bad input is a subclass of the matching built-in
(``ValueError``, ``TypeError``, ``RuntimeError``) so ordinary ``except`` clauses work.
"""

from __future__ import annotations

import os
import sys

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class GpunnError(Exception):
    """Base class of every gpunn-specific exception."""


class DeviceUnavailableError(GpunnError, RuntimeError):
    """An explicitly requested device (``"cuda"``, ``"cuda:N"``) cannot be used."""


class DeviceFallbackWarning(UserWarning):
    """``device="auto"`` found no usable GPU and fell back to the CPU."""


def user_stacklevel() -> int:
    """``warnings.warn``'s ``stacklevel`` for the caller's first frame outside gpunn, so a
    warning shows the user's line (``model = gn.Sequential(...)``), not gpunn's own."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def describe(value) -> str:
    """Short, human-readable description of a value for error messages."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def unknown_name(kind: str, name, valid) -> ValueError:
    """A ``ValueError`` for an unknown registry name that lists the valid choices."""
    choices = ", ".join(sorted(valid))
    return ValueError(f"unknown {kind} {name!r}; expected one of: {choices}")


def lookup(kind: str, name, table: dict, base: type, **kwargs):
    """An instance from a name registry, or ``name`` itself when it already is one.

    Names are case-insensitive; an unknown one raises a ``ValueError`` listing the valid
    names.
    """
    if isinstance(name, base):
        return name
    if not isinstance(name, str) or name.lower() not in table:
        raise unknown_name(kind, name, table)
    cls = table[name.lower()]
    try:
        return cls(**kwargs)
    except TypeError as exc:  # e.g. a user's class whose arguments have no defaults
        raise TypeError(f"{kind} {name!r} ({cls.__name__}) cannot be made by name: {exc}; "
                        f"pass an instance, e.g. {cls.__name__}(...)") from None


class TrainingDiverged(GpunnError, FloatingPointError):
    """The training loss became NaN or infinite.

    Attributes
    ----------
    epoch, step : int
        Where the first non-finite loss appeared (both counted from 1).
    """

    #: Under several ranks it is decided on the loss summed over the ranks, so every rank
    #: raises it after the same step (gpunn.distributed.plan.Plan.guard lets it through).
    collective = True

    def __init__(self, epoch: int, step: int, lr: float | None = None,
                 restored_epoch: int | None = None):
        self.epoch, self.step = epoch, step
        self.restored_epoch = epoch if restored_epoch is None else restored_epoch
        hint = f" (lr={lr:g})" if lr is not None else ""
        super().__init__(f"training diverged: the loss became NaN or infinite at epoch "
                         f"{epoch}, step {step}; the model is back at its parameters from "
                         f"the start of epoch {self.restored_epoch}. Try a lower learning "
                         f"rate{hint}, gradient clipping (clip_norm=...), or "
                         "on_divergence='skip'")


class RanksDisagree(GpunnError, ValueError):
    """The ranks of a distributed ``fit`` (``mpiexec``) were given different settings or
    data, or one rank refused its arguments: raised on every rank at once, before any
    step, naming what differs and each rank's value."""

    #: Raised on every rank at the same point: the ranks stay in step.
    collective = True


class DeviceMemoryError(GpunnError, MemoryError):
    """The device ran out of memory during training or inference."""


def flag(value, what: str) -> bool:
    """``value`` as a bool; a ValueError for anything but True/False (strings such as
    "False" are truthy, which would silently mean the opposite)."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{what}: expected True or False, got {value!r}")
