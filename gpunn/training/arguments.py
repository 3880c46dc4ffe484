"""What ``fit`` and ``evaluate`` are given: the checks of their arguments (all made before
anything changes) and the choices of what was left out (loss, optimiser, metrics)."""

from __future__ import annotations

import warnings

import numpy as np

from .. import losses as _losses
from .. import metrics as _metrics
from .. import optim as _optim
from ..backend.random import check_seed
from ..callbacks import Callback, keras_style
from ..errors import describe, user_stacklevel
from ..layers import positive_int as _positive_int
from . import batches
from .state import check_resume
from .weights import as_weights

DIVERGENCE = ("raise", "stop", "skip", "off")
#: The loss a first fit without ``loss=`` takes, by the model's output activation.
DEFAULT_LOSSES = {"softmax": "categorical_crossentropy", "sigmoid": "binary_crossentropy",
                  "identity": "mse", "linear": "mse"}


def check_settings(epochs, batch_size, verbose, shuffle, on_divergence, seed, device_data):
    """fit's scalar settings checked; returns ``(epochs, batch_size)`` as ints."""
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"verbose: expected 0, 1 or 2, got {verbose!r}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(f"shuffle: expected True or False, got {shuffle!r}")
    if on_divergence not in DIVERGENCE:
        raise ValueError(f"on_divergence: expected 'raise', 'stop', 'skip' or 'off', got "
                         f"{on_divergence!r}")
    check_seed(seed)
    if device_data not in (None, True, False):
        raise ValueError(f"device_data: expected None, True or False, got {device_data!r}")
    return epochs, batch_size


def output_activation(model) -> str | None:
    """The name of the activation that produces ``model``'s output (``"softmax"``,
    ``"identity"``, ...), or None where the last layer has none (e.g. Dropout).

    The one place that knows where a model keeps it: what ``fit`` chooses its default loss
    by."""
    out = model.output_layer()  # the leaf computing the output; None for a residual sum
    return getattr(out, "activation", None) if out is not None else None


def choose_loss(model, loss, resume):
    """The loss object of this fit: the one given, else the checkpoint's (resuming), else
    the model's from its last fit or file, else the one its output activation calls for
    (with a warning saying so)."""
    if loss is not None:
        return _losses.get(loss)
    if resume is not None and resume.loss is not None:
        return resume.loss
    if model.loss is not None:
        return model.loss
    activation = output_activation(model)
    name = DEFAULT_LOSSES.get(activation)
    if name is None:
        raise ValueError(f"loss: no loss given and none follows from the model's "
                         f"{activation or 'unknown'} output (a default exists for softmax, "
                         "sigmoid and identity outputs); pass loss= (e.g. 'mse', 'huber', "
                         "'mae')")
    warnings.warn(f"fit: no loss given; using {name!r} for the model's {activation} output "
                  "(pass loss= to choose another)", UserWarning, stacklevel=user_stacklevel())
    return _losses.get(name)


def choose_optimizer(model, optimizer):
    """The optimiser given, else the model's (its state kept), else a fresh ``Adam()``."""
    if optimizer is not None:
        return _optim.get(optimizer)
    return model.optimizer if model.optimizer is not None else _optim.Adam()


def check_resumed(model, resume, resume_from, loss, optimizer) -> None:
    """The checkpoint's loss must be this fit's; an optimiser object passed is not used."""
    if resume is None:
        return
    check_resume(resume, loss, resume_from)
    if isinstance(optimizer, _optim.Optimizer) and optimizer is not model.optimizer:
        warnings.warn(f"fit: resume_from={resume_from!r} restores the checkpoint's "
                      f"optimiser ({type(resume.optimizer).__name__}, lr="
                      f"{resume.optimizer.lr}); the optimizer passed is not used",
                      UserWarning, stacklevel=user_stacklevel())


def metrics_for(loss, metrics) -> list:
    """Metric objects by name; the loss's defaults when ``metrics`` is None."""
    if metrics is None:
        metrics = list(loss.default_metrics)
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
        raise ValueError(f"metrics: expected a list of names, got {describe(metrics)}")
    objs = [_metrics.get(m) for m in metrics]
    task = "classification" if getattr(loss, "classification", False) else "regression"
    for given, m in zip(metrics, objs):
        # A metric of the other kind would score nonsense or fail deep inside NumPy on
        # the targets' shape: name it and what fits this loss instead.
        wants = getattr(m, "task", None)
        if wants is not None and wants != task:
            fits = ", ".join(k for k in _metrics.NAMES if _metrics.METRICS[k].task == task)
            name = given if isinstance(given, str) else m.name
            raise ValueError(f"metrics: {name!r} scores a "
                             f"{'classifier' if wants == 'classification' else 'regression'}"
                             f"; loss {loss.name!r} trains a "
                             f"{'classifier' if task == 'classification' else 'regression'}"
                             f", whose metrics are {fits}{_kind_hint(loss)}")
    return objs


def _kind_hint(loss) -> str:
    """For a loss of the user's own: where its kind comes from."""
    if type(loss).__module__.startswith("gpunn."):
        return ""
    return (f" ({type(loss).__name__}.classification = "
            f"{bool(getattr(loss, 'classification', False))} says which)")


def split_rows(fraction, n: int | None):
    """Where ``validation_split=fraction`` cuts ``n`` rows: the first row of the
    validation part (Keras' rule: the last fraction, before any shuffling), or None when
    ``fraction`` is None (``n`` None: check the fraction alone).

    Raises
    ------
    ValueError
        A fraction outside (0, 1), or one that leaves either part empty.
    """
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
            or not 0 < fraction < 1:
        raise ValueError(f"validation_split: expected a fraction in (0, 1), got {fraction!r}")
    if n is None:
        return None
    at = int(np.ceil(n * (1 - float(fraction))))
    if at >= n:
        raise ValueError(f"validation_split={fraction!r} of {n} rows leaves no validation "
                         "row; give a larger fraction")
    if at <= 0:
        raise ValueError(f"validation_split={fraction!r} of {n} rows leaves no training "
                         "row; give a smaller fraction")
    return at


def check_callbacks(callbacks) -> list:
    """The callbacks as a new list: one callback alone counts as a list of it."""
    if isinstance(callbacks, Callback):
        return [callbacks]
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks: expected a list of gpunn.callbacks.Callback, got "
                        f"{describe(callbacks)}")
    checked = []
    for i, cb in enumerate(callbacks or []):
        # A callback written for Keras (on_epoch_end(self, epoch, logs), self.model) runs
        # through an adapter; a hook that fits neither style is named with both.
        try:
            run = keras_style(cb)
        except TypeError as exc:
            raise TypeError(f"callbacks[{i}]: {exc}") from None
        if run is None:
            raise TypeError(f"callbacks[{i}]: expected a gpunn.callbacks.Callback (hooks "
                            "such as on_epoch_end(self, model, epoch, logs)) or a Keras-style "
                            f"callback (on_epoch_end(self, epoch, logs)), got {describe(cb)}")
        checked.append(run)
    return checked


def check_monitors(callbacks, metrics, validating: bool, on_divergence: str) -> None:
    """Callbacks that watch a log must watch one this fit will write (before training)."""
    from ..callbacks import LearningRateSchedule, ReduceLROnPlateau

    logged = ["loss"] + [m.name for m in metrics]
    logged += [f"val_{k}" for k in logged] if validating else []
    logged += ["skipped"] if on_divergence == "skip" else []
    # Callbacks run sorted by order, then as listed: "lr" exists once a schedule has run.
    ranked = sorted(range(len(callbacks)), key=lambda i: getattr(callbacks[i], "order", 0))
    for i in ranked:
        cb = callbacks[i]
        if isinstance(cb, (LearningRateSchedule, ReduceLROnPlateau)) and "lr" not in logged:
            logged.append("lr")
        monitor = getattr(getattr(cb, "_monitor", None), "monitor", None)
        if monitor is None or not getattr(cb, "watches_logs", True):
            continue
        if monitor not in logged:
            hint = (" (val_ logs need validation_data)" if monitor.startswith("val_")
                    and not validating else "")
            raise ValueError(f"callbacks[{i}] ({type(cb).__name__}): monitor {monitor!r} "
                             f"will not be logged{hint}; this fit logs "
                             f"{', '.join(logged)}")


def validation_set(model, validation_data, loss, device_data, preprocessor=None):
    """``(X, T, streaming, W)`` of ``validation_data``, a pair ``(X_val, y_val)`` or, as in
    Keras, a triple with sample weights (``W`` None without them); None without data."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data: expected a pair (X_val, y_val) or a triple "
                         f"(X_val, y_val, sample_weight_val), got {describe(validation_data)}")
    X, T, streaming = batches.as_dataset(model, *validation_data[:2], loss, what="val_",
                                         device_data=device_data, preprocessor=preprocessor)
    W = None if len(validation_data) == 2 else as_weights(
        model, T, streaming, loss, validation_data[2], what="val_")
    return X, T, streaming, W


def data_source(batch_source, data):
    """The data source of this fit: ``data`` (a :class:`.batches.Batches`), or what
    ``batch_source(data)`` makes of it."""
    if batch_source is None:
        return data
    if not callable(batch_source):
        raise TypeError(f"batch_source: expected a function taking the usual data source "
                        f"and returning a gpunn.training.batches.Batches, got "
                        f"{describe(batch_source)}")
    made = batch_source(data)
    if not isinstance(made, batches.Batches):
        raise TypeError(f"batch_source: expected it to return a "
                        f"gpunn.training.batches.Batches, got {describe(made)}")
    return made


def check_precision(model) -> None:
    if model.backend.low_precision:
        l2 = [layer.label for layer in model.layers if getattr(layer, "kernel_l2", 0)]
        if l2:
            raise ValueError(f"{l2[0]}: kernel_l2 is not supported with "
                             f"dtype={model.dtype!r}; use the optimiser's weight_decay")
