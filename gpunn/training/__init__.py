"""Training: ``fit`` and ``evaluate`` for a :class:`gpunn.Sequential`, and ``predict``.

``fit`` checks every argument before anything changes (:mod:`.arguments`, which also
chooses what was left out), places the data (:mod:`.batches`), attaches the optimiser
(wrapped for 16-bit training), and hands a :class:`.loop.Trainer` the epochs; recovery
(roll-back, divergence, out of memory, Ctrl-C) is :mod:`.recovery`, checkpoint state
:mod:`.state`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from types import SimpleNamespace

from .. import distributed as _distributed
from .. import losses as _losses
from .. import optim as _optim
from ..atomic import check_outputs
from ..callbacks import EpochLogger, History, ProgressBar
from ..distributed import plan as _plan
from ..distributed.agreement import fit_terms
from ..layers import positive_int as _positive_int
from . import batches
from .arguments import (
    check_callbacks,
    check_monitors,
    check_precision,
    check_resumed,
    check_settings,
    choose_loss,
    choose_optimizer,
    data_source,
    metrics_for,
    output_activation,
    split_rows,
    validation_set,
)
from .evaluation import evaluate_arrays, inference_memory
from .loop import FitConfig, Trainer
from .recovery import interrupt_flag
from .state import read_checkpoint, restore_checkpoint
from .weights import as_weights

__all__ = ["fit", "evaluate", "predict", "step_function", "output_activation", "Trainer",
           "batches"]



def fit(model, X, y, loss=None, optimizer=None, epochs: int = 10, batch_size: int = 32,
        validation_data=None, shuffle: bool = True, verbose: int = 1,
        seed: int | None = None, metrics=None, device_data: bool | None = None,
        callbacks=None, on_divergence: str = "raise", resume_from=None, sample_weight=None,
        class_weight=None, batch_source=None, validation_split=None) -> History:
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
    validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
    validation_split : float in (0, 1), optional
        As in Keras: hold out the last ``validation_split`` of the rows as given (before
        any shuffling; ``ceil(N * (1 - validation_split))`` rows train) with their
        sample weights, instead of ``validation_data`` (giving both is refused).
        ``class_weight="balanced"`` counts the training rows only.
    shuffle : bool, default True
        A new batch order every epoch, drawn by the model's host generator (the same
        order on every device for the same seed); the rows are gathered on the device.
    verbose : int, default 1
        0 prints nothing, 1 prints one line per epoch.
    seed : int, optional
        Reseeds shuffling and dropout.
    metrics : list of str, optional
        Default: those of the previous ``fit`` while its loss is kept, else the loss's
        (``["accuracy"]`` for cross-entropies, ``["mae"]`` otherwise). Classifiers:
        ``"accuracy"``, ``"precision"``, ``"recall"``, ``"f1"`` (of the positive class
        for one sigmoid output, the macro mean over classes for softmax) and ``"auc"``
        (ROC area from 200 thresholds; one-vs-rest macro for softmax); regressions:
        ``"mse"``, ``"mae"``, ``"r2"``. A metric of the other kind is refused.
    device_data : bool, optional
        Keep the dataset on the model's device (True) or in host memory, streaming
        batches to the device (False). Default: on the device when it fits (within 80%
        of free GPU memory; batches are gathered from it, never a shuffled copy); always
        on the CPU.
    callbacks : list of gpunn.callbacks.Callback, optional
        Early stopping, checkpoints, learning-rate schedules, ReduceLROnPlateau, CSVLogger,
        your own; a callback written for Keras (``on_epoch_end(self, epoch, logs)``,
        ``self.model``) runs through :class:`gpunn.callbacks.KerasStyle`.
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
    sample_weight : (N,) array-like, optional
        Each row's weight (finite, >= 0, not all zero), as in scikit-learn: a batch's
        loss is ``sum(w_i l_i) / sum(w_i)`` over its rows' losses ``l_i`` (a batch of
        zero weights counts for nothing), and the epoch's loss and metrics are weighted
        averages (R² as ``sklearn.metrics.r2_score(sample_weight=)``). Weights follow
        their rows through shuffling, streaming and ranks. The fused CUDA loss heads are
        not used with weights.
    class_weight : dict {class: weight} or "balanced", optional
        For the cross-entropies: multiplies each row's weight by its class's (classes
        left out weigh 1; the classes are ``0..C-1`` of a softmax output, ``0`` and ``1``
        of one sigmoid output; one-hot rows count as their top class).
        ``"balanced"`` is scikit-learn's ``n_samples / (n_classes * bincount(y))``.
        Training rows only (validation weights come with ``validation_data``).
    batch_source : callable, optional
        Where the batches come from, when not in the usual order: called with the usual
        data source (a :class:`gpunn.training.batches.Batches` over the checked rows,
        targets and weights, gathered on the device or streamed from host memory), it
        returns the :class:`~gpunn.training.batches.Batches` to train on, e.g. one whose
        ``order`` gives another order of the rows (scikit-learn's estimators pass theirs).
        Several ranks take their pieces of its global batches.

    Returns
    -------
    History
        Training stops cleanly after the current step on Ctrl-C and returns the
        completed epochs; the model is put back at the end of the last of them (with
        its optimiser), so a file saved then is consistent, and stays usable.
    """
    # Everything is validated before any state (parameters, optimiser, RNG) changes; under
    # several ranks a rank whose checks fail tells the others, so every rank refuses.
    try:
        run = _prepare(model, X, y, loss, optimizer, epochs, batch_size, validation_data,
                       shuffle, verbose, seed, metrics, device_data, callbacks,
                       on_divergence, resume_from, sample_weight, class_weight,
                       batch_source, validation_split)
    except Exception as exc:
        _plan.refuse(exc)
        raise
    # The ranks agree on everything that must be equal before anything changes.
    dist = _plan.for_fit(model, run.terms)
    config, resume, optimizer, loss = run.config, run.resume, run.optimizer, run.loss
    callbacks = run.callbacks
    with model.backend.context(), dist.guard():
        history = History()
        if resume is not None:
            optimizer, history, _ = restore_checkpoint(model, resume)
        if seed is not None and resume is None:
            model.backend.random.seed(seed)
        if dist is not _plan.LOCAL:
            dist.start(model, seed)  # every rank from rank 0's weights and generator
        amp = _attach(model, optimizer)
        model.optimizer, model.loss = optimizer, loss
        model.metrics = [m.name for m in run.metrics]
        callbacks += [history] + _loggers(int(run.data.X.shape[0]), config.epochs,
                                          config.batch_size, config.verbose, dist)
        config = dataclasses.replace(config, dist=dist)
        trainer = Trainer(model, loss, optimizer, run.metrics, amp, config, callbacks,
                          history)
        # Under loss scaling an overflow is an expected event that skips the step.
        quiet = model.backend.overflow_expected() if amp else contextlib.nullcontext()
        with quiet, interrupt_flag() as interrupted:
            return trainer.run(run.data, interrupted)


def _prepare(model, X, y, loss, optimizer, epochs, batch_size, validation_data, shuffle,
             verbose, seed, metrics, device_data, callbacks, on_divergence, resume_from,
             sample_weight, class_weight, batch_source,
             validation_split=None) -> SimpleNamespace:
    """fit's arguments checked and its data placed, changing nothing: ``config``
    (a :class:`FitConfig` without its plan), ``loss``, ``optimizer``, ``metrics``,
    ``callbacks`` (this rank's), ``data``, ``resume`` (the checkpoint read, or None) and
    ``terms``, what the ranks must agree on (:func:`gpunn.distributed.agreement.fit_terms`)."""
    epochs, batch_size = check_settings(epochs, batch_size, verbose, shuffle, on_divergence,
                                        seed, device_data)
    if validation_split is not None and validation_data is not None:
        raise ValueError("validation_split and validation_data: give one (validation_split "
                         f"holds out the last rows of X), got validation_split="
                         f"{validation_split!r} and validation_data")
    split_rows(validation_split, None)  # the fraction itself, before the data is read
    _plan.check_batch(batch_size)
    resume = read_checkpoint(model, resume_from) if resume_from is not None else None
    loss = choose_loss(model, loss, resume)
    check_resumed(model, resume, resume_from, loss, optimizer)
    optimizer = choose_optimizer(model, optimizer)
    if resume is not None:  # restored once the ranks agree; it replaces the one given
        optimizer = resume.optimizer
    metric_objs = metrics_for(loss, metrics if metrics is not None or loss is not model.loss
                              else (model.metrics or None))
    callbacks = check_callbacks(callbacks)
    check_monitors(callbacks, metric_objs,
                   validation_data is not None or validation_split is not None, on_divergence)
    # Every rank runs the callbacks that decide (the agreement compares them); rank 0
    # alone prints and runs those that write files.
    shared = [cb for cb in callbacks if not getattr(cb, "rank_zero_only", False)]
    if not _plan.is_root():
        verbose, callbacks = 0, shared
    # Checkpoint folders exist and are writable before the first step (created if missing).
    # (Writing over the checkpoint resumed from is fine: it was read above.)
    # The names themselves are tried, the last epoch's too (the longest a field makes).
    check_outputs([p for cb in callbacks if hasattr(cb, "outputs") for p in cb.outputs()],
                  probes=[p for cb in callbacks if hasattr(cb, "probes")
                          for p in cb.probes(epochs)])
    # A checkpoint's preprocessing applies from the first step (it is attached below,
    # once everything is checked).
    prep = resume.preprocessor if resume is not None else None
    with model.backend.context():
        X, T, streaming = batches.as_dataset(model, X, y, loss, device_data=device_data,
                                             preprocessor=prep)
        at = split_rows(validation_split, int(X.shape[0]))
        if at is None:
            W = as_weights(model, T, streaming, loss, sample_weight, class_weight)
            val = validation_set(model, validation_data, loss, device_data, prep)
        else:
            X, T, W, val = _held_out(model, X, T, streaming, loss, at, sample_weight,
                                     class_weight)
        data = data_source(batch_source, batches.source(model.backend, X, T, W, batch_size,
                                                        shuffle, streaming))
        check_precision(model)
        start = 1 if resume is None else int(resume.training["epoch"]) + 1
        resumed = None if resume is None else (
            resume.training.get("callbacks") or {}, resume_from)
        config = FitConfig(epochs, batch_size, bool(shuffle), int(verbose), on_divergence,
                           val, start, weighted=W is not None, labels=T.ndim == 1,
                           resumed=resumed)
        terms = {}
        if _distributed.size() > 1:  # what one process never needs (a few strided host reads)
            terms = fit_terms(config, model, loss, optimizer, metric_objs, shared, data,
                              seed, resume)
    return SimpleNamespace(config=config, loss=loss, optimizer=optimizer,
                           metrics=metric_objs, callbacks=callbacks, data=data,
                           resume=resume, terms=terms)


def _held_out(model, X, T, streaming, loss, at, sample_weight, class_weight):
    """``validation_split``: the placed rows cut at row ``at`` into training rows
    ``(X, T, W)`` and a validation set ``(X, T, streaming, W)`` as
    :func:`~.arguments.validation_set` makes. Sample weights follow their rows; class
    weights (balanced ones counted on the training rows) apply to the training rows
    only, as with ``validation_data``."""
    from ..metrics import check_sample_weight

    n = int(X.shape[0])
    sw = None if sample_weight is None else check_sample_weight(sample_weight, n)
    X_fit, X_val = batches.split_rows(X, at)
    T_fit, T_val = T[:at], T[at:]
    W = as_weights(model, T_fit, streaming, loss, None if sw is None else sw[:at],
                   class_weight)
    W_val = None if sw is None else as_weights(model, T_val, streaming, loss, sw[at:],
                                               what="val_")
    return X_fit, T_fit, W, (X_val, T_val, streaming, W_val)


def _loggers(n: int, epochs: int, batch_size: int, verbose, dist) -> list:
    """The epoch line (``verbose``) and, on a terminal at ``verbose=1``, the progress bar."""
    if not verbose:
        return []
    bar = [ProgressBar(dist.local_rows(n, batch_size), batch_size // dist.size, epochs)] \
        if verbose == 1 and sys.stdout.isatty() else []
    return [EpochLogger(n, epochs)] + bar


def evaluate(model, X, y, loss=None, batch_size: int = 1024, metrics=None,
             sample_weight=None) -> dict:
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
    sample_weight : (N,) array-like, optional
        Weighted averages of loss and metrics, as in :func:`fit`.

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
        X, T, streaming = batches.as_dataset(model, X, y, loss)
        W = as_weights(model, T, streaming, loss, sample_weight)
        return evaluate_arrays(model, X, T, streaming, loss, metric_objs, batch_size, W=W)


def predict(model, X, batch_size: int = 4096):
    """Model output in inference mode, batch by batch; ``(N, output_dim)`` on the device."""
    batch_size = _positive_int(batch_size, "batch_size")
    backend = model.backend
    with backend.context():
        placement = batches.placement(model, X, None)
        given = X
        X = batches.as_input(model, X, backend=placement)
        batches.check_finite(placement, X, "X", given)
        batches.check_preprocessable(X, model.preprocessor, "X")
        if isinstance(X, batches.SparseRows):
            batch_size = X.chunk(batch_size)
        if model.preprocessor is not None:
            X = model.preprocessor.transform(X, placement)
        streaming = not backend.owns(X)
        with inference_memory(model, batch_size, "predicting"):
            parts = [model.forward_batch(xb, training=False) for xb, _, _ in
                     batches.iterate(backend, X, None, batch_size, False, streaming)]
            out = None if not parts else (parts[0] if len(parts) == 1 else
                                          backend.xp.concat(parts, axis=0))
        model.forget()
        if out is None:
            return backend.zeros((0, model.output_dim))
        # A network trained on standardised targets answers in the targets' own units.
        scaler = getattr(model, "target_scaler", None)
        return scaler.inverse_transform(out, backend) if scaler is not None else out


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
    config = FitConfig(1, int(x.shape[0]), shuffle=False, on_divergence="off",
                       labels=t.ndim == 1)
    trainer = Trainer(model, model.loss, model.optimizer, [], amp, config, [], History())
    # The loss's slot, as fit's epoch buffer gives one to a head that writes it.
    slots = (model.backend.zeros(()), None) if trainer.head.writes_loss else None

    def step():
        with model.backend.context():
            return trainer.step(x, t, slots=slots).value

    return step


def _attach(model, optimizer):
    """Bind the optimiser to the parameters; for 16-bit models through a loss-scaling
    wrapper over float32 master weights (kept across fits while still in sync)."""
    params = model.store.step_lists()[0]
    shapes = [tuple(p.shape) for p in model.parameters()]  # what a flat buffer holds
    if not model.backend.low_precision:
        model._amp = None
        optimizer.attach(params, model.backend, shapes)
        return None
    amp = model._amp
    if amp is None or len(amp.params) != len(params) or any(
            a is not b for a, b in zip(amp.params, params)) or not amp.in_sync():
        amp = model._amp = _optim.LossScaleOptimizer.for_dtype(model.backend, params)
    amp.attach(optimizer, shapes)
    return amp
