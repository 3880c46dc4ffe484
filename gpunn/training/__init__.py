"""Training: ``fit`` and ``evaluate`` for a :class:`gpunn.Sequential`, and ``predict``.

``fit`` checks every argument before anything changes, places the data
(:mod:`.batches`), attaches the optimiser (wrapped for 16-bit training), and hands a
:class:`.loop.Trainer` the epochs; recovery (roll-back, divergence, out of memory, Ctrl-C)
is :mod:`.recovery`, checkpoint state :mod:`.state`.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

import numpy as np

from .. import losses as _losses
from .. import metrics as _metrics
from .. import optim as _optim
from ..atomic import check_outputs
from ..backend.ops import all_finite
from ..backend.random import check_seed
from ..callbacks import Callback, EpochLogger, History, ProgressBar
from ..distributed import plan as _plan
from ..errors import describe, user_stacklevel
from ..layers import _positive_int
from . import batches
from .loop import Trainer, evaluate_arrays, inference_memory
from .recovery import interrupt_flag
from .state import check_resume, read_checkpoint, restore_checkpoint

__all__ = ["fit", "evaluate", "predict", "step_function", "output_activation", "Trainer",
           "batches"]

DIVERGENCE = ("raise", "stop", "skip", "off")
#: The loss a first fit without ``loss=`` takes, by the model's output activation.
DEFAULT_LOSSES = {"softmax": "categorical_crossentropy", "sigmoid": "binary_crossentropy",
                  "identity": "mse", "linear": "mse"}


def fit(model, X, y, loss=None, optimizer=None, epochs: int = 10, batch_size: int = 32,
        validation_data=None, shuffle: bool = True, verbose: int = 1,
        seed: int | None = None, metrics=None, device_data: bool | None = None,
        callbacks=None, on_divergence: str = "raise", resume_from=None) -> History:
    """Train ``model``.

    Parameters
    ----------
    model : Sequential
    X : (N, input_dim) array-like
        NumPy, CuPy or Array API array, nested list, or any DLPack array (a detached
        PyTorch tensor, a JAX array): used in place, without a copy, when it is already
        on the model's device in the model's dtype.
    y : (N,) or (N, output_dim)
        Binary 0/1 targets, integer class labels, one-hot rows or regression values.
    loss : str or Loss, optional
        Given once, as to Keras' ``compile``: without it a later ``fit`` (or a ``fit`` of
        a loaded model) keeps the model's loss. A first ``fit`` without it takes the
        loss that fits the output activation (:func:`output_activation`): softmax ->
        ``"categorical_crossentropy"``, sigmoid -> ``"binary_crossentropy"``, identity
        or linear -> ``"mse"``, and says so with a ``UserWarning``; any other output
        needs ``loss=``.
    optimizer : str or Optimizer, optional
        Likewise kept from the previous ``fit`` (or the loaded file), with its state
        (moments, step count) and hyper-parameters; a first ``fit`` without it uses
        ``Adam()`` (lr=0.001). A name gets a fresh optimiser with its default
        hyper-parameters; pass an object to set them.
    epochs, batch_size : int > 0
    validation_data : (X_val, y_val), optional
    shuffle : bool, default True
        Reshuffle on the device every epoch.
    verbose : int, default 1
        0 prints nothing, 1 prints one line per epoch.
    seed : int, optional
        Reseeds shuffling and dropout.
    metrics : list of str, optional
        Default: those of the previous ``fit`` while its loss is kept, else the loss's
        (``["accuracy"]`` for cross-entropies, ``["mae"]`` otherwise).
    device_data : bool, optional
        Keep the dataset on the model's device (True) or in host memory, streaming
        batches to the device (False). Default: on the device when it fits (within 80%
        of free GPU memory; batches are gathered from it, never a shuffled copy); always
        on the CPU.
    callbacks : list of gpunn.callbacks.Callback, optional
        Early stopping, checkpoints, learning-rate schedules, your own.
    on_divergence : {"raise", "stop", "skip", "off"}, default "raise"
        What a NaN or infinite loss does. It is noticed at the epoch's one host read
        (no per-step sync); "raise" puts the parameters and optimiser back to the start
        of that epoch and raises :class:`gpunn.TrainingDiverged` naming epoch and step;
        "stop" does the same but returns the history instead; "skip" drops each such
        batch's update on the device as it happens (logged as ``skipped``); "off"
        neither checks nor keeps the host copy of parameters and optimiser state that
        rolling back needs (saves that memory).
    resume_from : str, optional
        A checkpoint written by :class:`gpunn.callbacks.ModelCheckpoint` (or by
        ``model.save`` after ``fit``): parameters, optimiser (its state and
        hyper-parameters replace ``optimizer``), epoch counter, random generator and
        history are restored and training continues up to ``epochs``; without ``loss=``
        the checkpoint's loss is used. On the CPU the result is bitwise identical to an
        uninterrupted run.

    Returns
    -------
    History
        Training stops cleanly after the current step on Ctrl-C and returns the
        completed epochs; the model is put back at the end of the last of them (with
        its optimiser), so a file saved then is consistent, and stays usable.
    """
    # Everything is validated before any state (parameters, optimiser, RNG) changes.
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"verbose: expected 0, 1 or 2, got {verbose!r}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(f"shuffle: expected True or False, got {shuffle!r}")
    resume = read_checkpoint(model, resume_from) if resume_from is not None else None
    loss = _choose_loss(model, loss, resume)
    _check_resume(model, resume, resume_from, loss, optimizer)
    optimizer = _choose_optimizer(model, optimizer)
    metric_objs = metrics_for(loss, metrics if metrics is not None or loss is not model.loss
                              else (model.metrics or None))
    callbacks = _check_callbacks(callbacks)
    if on_divergence not in DIVERGENCE:
        raise ValueError(f"on_divergence: expected 'raise', 'stop', 'skip' or 'off', got "
                         f"{on_divergence!r}")
    check_seed(seed)
    if device_data not in (None, True, False):
        raise ValueError(f"device_data: expected None, True or False, got {device_data!r}")
    _check_monitors(callbacks, metric_objs, validation_data is not None, on_divergence)
    dist, verbose, callbacks = _ranks(model, batch_size, verbose, callbacks)
    # Checkpoint folders exist and are writable before the first step (created if missing).
    # (Writing over the checkpoint resumed from is fine: it was read above.)
    check_outputs([p for cb in callbacks if hasattr(cb, "outputs") for p in cb.outputs()])
    # A checkpoint's preprocessing applies from the first step (it is attached below,
    # once everything is checked).
    prep = resume.preprocessor if resume is not None else None
    with model.backend.context():
        X, T, streaming = batches.as_dataset(model, X, y, loss, device_data=device_data,
                                             preprocessor=prep)
        val = _validation(model, validation_data, loss, device_data, prep)
        _check_precision(model)
        history, start = History(), 1
        if resume is not None:
            optimizer, history, start = restore_checkpoint(model, resume)
        if seed is not None and resume is None:
            model.backend.random.seed(seed)
        if dist is not _plan.LOCAL:
            dist.start(model, seed)  # every rank from rank 0's weights and generator
        amp = _attach(model, optimizer)
        model.optimizer, model.loss = optimizer, loss
        model.metrics = [m.name for m in metric_objs]
        callbacks += [history] + ([EpochLogger(int(X.shape[0]), epochs)] if verbose else [])
        if verbose == 1 and sys.stdout.isatty():
            callbacks.append(ProgressBar(dist.local_rows(int(X.shape[0]), batch_size),
                                         batch_size // dist.size, epochs))
        settings = dict(epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                        verbose=verbose, on_divergence=on_divergence, val=val, start=start,
                        dist=dist)
        trainer = Trainer(model, loss, optimizer, metric_objs, amp, settings, callbacks,
                          history)
        # Under loss scaling an overflow is an expected event that skips the step.
        quiet = model.backend.overflow_expected() if amp else contextlib.nullcontext()
        with quiet, interrupt_flag() as interrupted:
            return trainer.run(X, T, streaming, interrupted)


def _ranks(model, batch_size, verbose, callbacks):
    """The distributed plan; on ranks other than 0 (an MPI launch) nothing printed and no
    callback that writes files."""
    dist = _plan.for_fit(model, batch_size)
    if dist.is_root:
        return dist, verbose, callbacks
    return dist, 0, [cb for cb in callbacks if not getattr(cb, "rank_zero_only", False)]


def output_activation(model) -> str | None:
    """The name of the activation that produces ``model``'s output (``"softmax"``,
    ``"identity"``, ...), or None where the last layer has none (e.g. Dropout).

    The one place that knows where a model keeps it: what ``fit`` chooses its default loss
    by."""
    return getattr(model.layers[-1], "activation", None)


def _choose_loss(model, loss, resume):
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


def _choose_optimizer(model, optimizer):
    """The optimiser given, else the model's (its state kept), else a fresh ``Adam()``."""
    if optimizer is not None:
        return _optim.get(optimizer)
    return model.optimizer if model.optimizer is not None else _optim.Adam()


def _check_resume(model, resume, resume_from, loss, optimizer) -> None:
    """The checkpoint's loss must be this fit's; an optimiser object passed is not used."""
    if resume is None:
        return
    check_resume(resume, loss, resume_from)
    if isinstance(optimizer, _optim.Optimizer) and optimizer is not model.optimizer:
        warnings.warn(f"fit: resume_from={resume_from!r} restores the checkpoint's "
                      f"optimiser ({type(resume.optimizer).__name__}, lr="
                      f"{resume.optimizer.lr}); the optimizer passed is not used",
                      UserWarning, stacklevel=user_stacklevel())


def evaluate(model, X, y, loss=None, batch_size: int = 1024, metrics=None) -> dict:
    """Loss and metrics on a dataset, in inference mode.

    Parameters
    ----------
    model : Sequential
    X : (N, input_dim)
    y : (N,) or (N, output_dim)
    loss : str or Loss, optional
        Defaults to the loss of the last ``fit``.
    metrics : list of str, optional
        Defaults to those of the last ``fit`` (or the loss's defaults).

    Returns
    -------
    dict
        ``{"loss": float, "<metric>": float, ...}``
    """
    loss = loss if loss is not None else model.loss
    if loss is None:
        raise ValueError("evaluate: no loss given and the model has not been fit; pass "
                         "loss='mse' / 'binary_crossentropy' / ...")
    loss = _losses.get(loss)
    batch_size = _positive_int(batch_size, "batch_size")
    metric_objs = metrics_for(loss, metrics if metrics is not None else (
        model.metrics or None))
    with model.backend.context():
        return evaluate_arrays(model, *batches.as_dataset(model, X, y, loss), loss,
                               metric_objs, batch_size)


def predict(model, X, batch_size: int = 4096):
    """Model output in inference mode, batch by batch; ``(N, output_dim)`` on the device."""
    batch_size = _positive_int(batch_size, "batch_size")
    backend = model.backend
    with backend.context():
        placement = batches.placement(model, X, None)
        X = batches.as_input(model, X, backend=placement)
        if not all_finite(placement.xp, X):
            raise ValueError("X: contains NaN or Inf")
        if model.preprocessor is not None:
            X = model.preprocessor.transform(X, placement)
        streaming = not backend.owns(X)
        with inference_memory(model, batch_size, "predicting"):
            parts = [model.forward_batch(xb, training=False) for xb, _ in
                     batches.iterate(backend, X, None, batch_size, False, streaming)]
            out = None if not parts else (parts[0] if len(parts) == 1 else
                                          backend.xp.concat(parts, axis=0))
        model.forget()
        return out if out is not None else backend.zeros((0, model.output_dim))


def step_function(model, X, y):
    """A function running one training step on ``(X, y)`` exactly as ``fit`` runs it per
    batch, with the loss and optimiser of the last ``fit``. Inputs are checked and placed
    first, so the step never waits on the host (the benchmark captures it in a CUDA graph
    to count its kernel launches). Where the loss kernel writes the loss into its slot (as
    in ``fit``), every call returns that same 0-d array, overwritten by the next call.
    """
    if model.optimizer is None or model.loss is None:
        raise ValueError("step_function: the model has not been fit (no loss or optimiser)")
    with model.backend.context():
        x, t, _ = batches.as_dataset(model, X, y, model.loss, device_data=True)
        amp = _attach(model, model.optimizer)
    settings = dict(epochs=1, batch_size=int(x.shape[0]), shuffle=False, verbose=0,
                    on_divergence="off", val=None, start=1)
    trainer = Trainer(model, model.loss, model.optimizer, [], amp, settings, [], History())

    slot = model.backend.zeros(())  # the loss's slot, as fit's epoch buffer gives one

    def step():
        with model.backend.context():
            return trainer.step(x, t, trainer.fusion(slot))[0]

    return step


def metrics_for(loss, metrics) -> list:
    """Metric objects by name; the loss's defaults when ``metrics`` is None."""
    if metrics is None:
        metrics = list(loss.default_metrics)
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
        raise ValueError(f"metrics: expected a list of names, got {describe(metrics)}")
    return [_metrics.get(m) for m in metrics]


def _check_callbacks(callbacks) -> list:
    callbacks = list(callbacks or [])
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}]: expected a gpunn.callbacks.Callback, got "
                            f"{describe(cb)}")
    return callbacks


def _check_monitors(callbacks, metrics, validating: bool, on_divergence: str) -> None:
    """Callbacks that watch a log must watch one this fit will write (before training)."""
    from ..callbacks import LearningRateSchedule

    logged = ["loss"] + [m.name for m in metrics]
    logged += [f"val_{k}" for k in logged] if validating else []
    logged += ["skipped"] if on_divergence == "skip" else []
    # Callbacks run sorted by order, then as listed: "lr" exists once a schedule has run.
    ranked = sorted(range(len(callbacks)), key=lambda i: getattr(callbacks[i], "order", 0))
    for i in ranked:
        cb = callbacks[i]
        if isinstance(cb, LearningRateSchedule) and "lr" not in logged:
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


def _validation(model, validation_data, loss, device_data, preprocessor=None):
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError("validation_data: expected a pair (X_val, y_val), got "
                         f"{describe(validation_data)}")
    return batches.as_dataset(model, *validation_data, loss, what="val_",
                              device_data=device_data, preprocessor=preprocessor)


def _check_precision(model) -> None:
    if model.backend.low_precision:
        l2 = [layer.label for layer in model.layers if getattr(layer, "kernel_l2", 0)]
        if l2:
            raise ValueError(f"{l2[0]}: kernel_l2 is not supported with "
                             f"dtype={model.dtype!r}; use the optimiser's weight_decay")


def _attach(model, optimizer):
    """Bind the optimiser to the parameters; for 16-bit models through a loss-scaling
    wrapper over float32 master weights (kept across fits while still in sync)."""
    params = model.store.step_lists()[0]
    if not model.backend.low_precision:
        model._amp = None
        optimizer.attach(params, model.backend)
        return None
    amp = model._amp
    if amp is None or len(amp.params) != len(params) or any(
            a is not b for a, b in zip(amp.params, params)) or not amp.in_sync():
        amp = model._amp = _optim.LossScaleOptimizer.for_dtype(model.backend, params)
    amp.attach(optimizer)
    return amp
