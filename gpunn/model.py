"""``Sequential``: a stack of layers with a training loop.

The loop keeps everything on the model's device: the dataset is moved once, shuffled
there, and the loss and metrics accumulate as 0-d device arrays that are read once per
epoch, so no step waits on the host.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time

import numpy as np

from . import losses as _losses
from . import metrics as _metrics
from . import optim as _optim
from .amp import MixedPrecision
from .backend import NumpyBackend, get_backend, host_array
from .callbacks import Callback, ProgressBar
from .errors import DeviceMemoryError, TrainingDiverged, describe
from .layers import Dense, Dropout, Layer, _positive_int

ARCH_REQUIRED = ("input_dim", "output_dim")
ARCH_OPTIONAL = ("activation", "init", "kernel_l2", "dropout", "activation_params")


class History:
    """What ``fit`` returns: per-epoch values, Keras style.

    Attributes
    ----------
    history : dict of str -> list of float
        ``"loss"``, each metric, and ``"val_"`` versions when validation data is given.
    epoch : list of int
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, values: dict) -> None:
        self.epoch.append(epoch)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


class Sequential:
    """Layers applied one after another.

    Parameters
    ----------
    layers : list of Layer
        Sizes must chain: each Dense's ``in_features`` equals the previous output width.
    device : str, Backend or module, default "auto"
        See :func:`gpunn.get_backend`; ``None`` reads ``GPUNN_DEVICE``.
    dtype : str, optional
        ``"float32"`` (default), ``"float64"``; a Backend given as ``device`` keeps its own.
    seed : int, optional
        Seeds weight initialisation (and, until ``fit(seed=...)`` reseeds it, dropout
        and shuffling).

    Examples
    --------
    >>> import gpunn as gn
    >>> model = gn.Sequential([gn.Dense(2, 8, activation="tanh"),
    ...                        gn.Dense(8, 1, activation="sigmoid")], device="cpu", seed=0)
    >>> model.forward([[0.0, 1.0]]).shape
    (1, 1)
    """

    def __init__(self, layers, device="auto", dtype: str | None = None,
                 seed: int | None = None):
        layers = list(layers) if isinstance(layers, (list, tuple)) else layers
        if not isinstance(layers, list) or not layers:
            raise ValueError(f"Sequential layers: expected a non-empty list of layers, "
                             f"got {describe(layers)}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential layers[{i}]: expected a gpunn Layer, got "
                                f"{describe(layer)}")
        _check_chain(layers)
        backend = get_backend(device if device is not None else None, dtype=dtype, seed=seed)
        # Inside the device's context: on cuda:N every allocation must land on GPU N.
        with backend.context():
            for i, layer in enumerate(layers):
                if layer.name is None:
                    layer.name = f"{type(layer).__name__.lower()}_{i}"
                if layer.backend is None or not layer.params:
                    layer.build(backend)
                else:
                    layer.to(backend)
        self.layers = layers
        self.backend = backend
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self._flat = None
        self._amp = None  # float16 only: master weights and loss scale (gpunn.amp)
        #: Applied to X by fit, evaluate and predict (e.g. a fitted Standardizer).
        self.preprocessor = None
        #: JSON-serialisable data saved with the model (class labels, task, ...).
        self.extra: dict = {}
        self.stop_training = False
        self._train_state = None  # epoch, RNG state and history: what resume_from needs
        self._flatten()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_architecture(cls, architecture, **kwargs) -> Sequential:
        """Build a model from a list of layer dicts.

        Parameters
        ----------
        architecture : list of dict
            Each ``{"input_dim": int, "output_dim": int, "activation": str}``; optional
            keys ``init``, ``kernel_l2``, ``activation_params`` and ``dropout`` (a Dropout
            of that rate after the layer).
        **kwargs
            ``device``, ``dtype``, ``seed`` for :class:`Sequential`.

        Examples
        --------
        >>> net = Sequential.from_architecture([
        ...     {"input_dim": 2, "output_dim": 25, "activation": "relu"},
        ...     {"input_dim": 25, "output_dim": 1, "activation": "sigmoid"}], device="cpu")
        """
        if not isinstance(architecture, (list, tuple)) or not architecture:
            raise ValueError(f"architecture: expected a non-empty list of dicts, got "
                             f"{describe(architecture)}")
        layers: list[Layer] = []
        for i, spec in enumerate(architecture):
            if not isinstance(spec, dict):
                raise TypeError(f"architecture[{i}]: expected a dict, got {describe(spec)}")
            missing = [k for k in ARCH_REQUIRED if k not in spec]
            unknown = sorted(set(spec) - set(ARCH_REQUIRED) - set(ARCH_OPTIONAL))
            if missing or unknown:
                problems = []
                if missing:
                    problems.append(f"missing key(s) {missing}")
                if unknown:
                    problems.append(f"unknown key(s) {unknown}")
                raise ValueError(f"architecture[{i}]: {' and '.join(problems)}; expected "
                                 f"{list(ARCH_REQUIRED)} and optionally {list(ARCH_OPTIONAL)}")
            try:
                layers.append(Dense(spec["input_dim"], spec["output_dim"],
                                    activation=spec.get("activation"), init=spec.get("init"),
                                    kernel_l2=spec.get("kernel_l2", 0.0),
                                    activation_params=spec.get("activation_params")))
                if spec.get("dropout"):
                    layers.append(Dropout(spec["dropout"]))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"architecture[{i}]: {exc}") from None
        return cls(layers, **kwargs)

    # ------------------------------------------------------------------ flat buffers
    def _flatten(self) -> None:
        """Move every parameter and gradient into one flat buffer each (as views).

        Then the optimiser updates the whole model in one fused pass and gradients are
        written straight into place. Only on backends whose slices are guaranteed views
        (NumPy, CuPy); elsewhere the parameters stay separate arrays.
        """
        self._flat = None
        backend = self.backend
        entries = [(layer, key) for layer in self.layers for key in layer.params]
        if not backend.supports_views or not entries:
            return
        shapes = [tuple(layer.params[key].shape) for layer, key in entries]
        total = sum(int(layer.params[key].size) for layer, key in entries)
        with backend.context():
            P, G = backend.zeros((total,)), backend.zeros((total,))
            pviews, gviews = backend.flat_views(P, shapes), backend.flat_views(G, shapes)
            for (layer, key), pv, gv in zip(entries, pviews, gviews):
                pv[...] = layer.params[key]
                gv[...] = layer.grads[key]
                layer.params[key], layer.grads[key] = pv, gv
        for layer in self.layers:
            layer._pinned_grads = bool(layer.params)
        self._flat = (P, G, entries, pviews)

    def _step_lists(self) -> tuple[list, list]:
        """What the optimiser steps on: the flat buffers, or the separate arrays."""
        if self._flat is not None:
            P, G, entries, pviews = self._flat
            # Users may have rebound layer.params[...] to a new array; adopt it.
            if any(layer.params[key] is not pv for (layer, key), pv in zip(entries, pviews)):
                self._flatten()
                P, G = self._flat[:2]
            return [P], [G]
        return self.parameters(), self.gradients()

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> str:
        """Device name of the model's backend (``"cpu"``, ``"cuda:0"``, ...)."""
        return self.backend.name

    @property
    def dtype(self) -> str:
        return self.backend.dtype_name

    @property
    def input_dim(self) -> int | None:
        return next((lay.in_features for lay in self.layers if lay.in_features), None)

    @property
    def output_dim(self) -> int | None:
        width = None
        for layer in self.layers:
            width = layer.output_shape(width)
        return width

    def parameters(self) -> list:
        """All parameter arrays, layer by layer (``W`` before ``b``)."""
        return [p for layer in self.layers for p in layer.params.values()]

    def gradients(self) -> list:
        """Gradients from the last backward, in the order of :meth:`parameters`."""
        return [layer.grads[k] for layer in self.layers for k in layer.params]

    def count_params(self) -> int:
        return sum(int(p.size) for p in self.parameters())

    def summary(self, print_fn=print) -> str:
        """A table of layers, output widths and parameter counts; printed and returned."""
        rows = [("layer", "type", "output", "params")]
        width = None
        for layer in self.layers:
            width = layer.output_shape(width)
            n = sum(int(p.size) for p in layer.params.values())
            rows.append((layer.name, repr(layer), f"(batch, {width})", f"{n:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"total parameters: {self.count_params():,} on {self.backend.describe()}")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r}, device={self.device!r}, dtype={self.dtype!r})"

    # ------------------------------------------------------------------ files
    def save(self, path, include_optimizer: bool = True) -> None:
        """Write the model (and optimiser state, preprocessing) to ``path`` (``.npz``).

        The file is written atomically and holds no pickles; :func:`gpunn.load` reads it
        on any device.
        """
        from .io import save

        save(self, path, include_optimizer=include_optimizer)

    # ------------------------------------------------------------------ devices
    def to(self, device) -> Sequential:
        """Move parameters and optimiser state to ``device`` (any spec of get_backend)."""
        backend = get_backend(device, dtype=self.backend.dtype_name)
        with backend.context():
            for layer in self.layers:
                layer.to(backend)
            if self.optimizer is not None:
                # Under float16 the optimiser works on the float32 master weights.
                self.optimizer.to(backend.with_dtype("float32") if self._amp is not None
                                  else backend)
        self.backend = backend
        self._flatten()
        if self._amp is not None:
            self._amp.to(backend, self._step_lists()[0])
        return self

    # ------------------------------------------------------------------ forward / backward
    def _as_input(self, x, what: str = "X", backend=None):
        backend = backend or self.backend
        try:
            x = backend.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}: expected a numeric array, got {describe(x)} ({exc})") \
                from None
        xp = backend.xp
        if x.ndim != 2:
            raise ValueError(f"{what}: expected a 2-D array (samples, features), got "
                             f"{describe(x)}")
        if not backend.is_floating(x.dtype):
            x = xp.astype(x, backend.dtype)
        n_in = self.input_dim
        if n_in is not None and x.shape[1] != n_in:
            raise ValueError(f"{what}: the first layer {self.layers[0].label} expects "
                             f"{n_in} features, got {describe(x)}")
        return x

    def forward(self, x, training: bool = False):
        """Model output.

        Parameters
        ----------
        x : (batch, input_dim) array or nested list
        training : bool
            Enables dropout.

        Returns
        -------
        (batch, output_dim) array on the model's device
        """
        with self.backend.context():
            return self._forward(self._as_input(x), training)

    def _forward(self, x, training: bool, logits: bool = False):
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if logits and i == last:
                x = layer.forward(x, training, logits=True)
            else:
                x = layer.forward(x, training)
        return x

    def backward(self, grad):
        """Backpropagate ``dL/doutput`` ``(batch, output_dim)``; fills every ``layer.grads``.

        Returns
        -------
        (batch, input_dim) gradient with respect to the model input
        """
        with self.backend.context():
            return self._backward(self.backend.asarray(grad), need_input_grad=True)

    def _backward(self, grad, need_input_grad: bool, from_logits: bool = False):
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            layer = self.layers[i]
            need = need_input_grad or i > 0
            if from_logits and i == last:
                grad = layer.backward_preactivation(grad, need)
            elif isinstance(layer, Dense):
                grad = layer.backward(grad, need)
            else:
                grad = layer.backward(grad)
        return grad

    def _regularization(self):
        total = None
        for layer in self.layers:
            r = layer.regularization_loss()
            if r is not None:
                total = r if total is None else total + r
        return total

    def _fused(self, loss) -> bool:
        last = self.layers[-1]
        return (isinstance(last, Dense) and loss.fused_activation is not None
                and not getattr(loss, "from_logits", False)
                and last.activation == loss.fused_activation)

    # ------------------------------------------------------------------ data checks
    def _as_target(self, y, n: int, loss, what: str = "y", backend=None):
        backend = backend or self.backend
        xp = backend.xp
        try:
            y = backend.asarray(y)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}: expected a numeric array, got {describe(y)} ({exc})") \
                from None
        if y.ndim not in (1, 2) or y.shape[0] != n:
            raise ValueError(f"{what}: expected {n} targets (one per row of X), got "
                             f"{describe(y)}")
        if backend.is_floating(y.dtype) and not _all_finite(xp, y):
            raise ValueError(f"{what}: contains NaN or Inf")
        n_out = self.output_dim
        if isinstance(loss, _losses.CategoricalCrossEntropy):
            if n_out < 2:
                raise ValueError(f"loss {loss.name!r}: needs a last layer with >= 2 outputs "
                                 f"(one per class), the model has {n_out}; use "
                                 "binary_crossentropy for one sigmoid output")
            if y.ndim == 1:
                lo, hi = int(xp.min(y)), int(xp.max(y))
                if backend.is_floating(y.dtype) and not bool(
                        xp.all(y == xp.round(y))):
                    raise ValueError(f"{what}: class labels must be integers, got "
                                     "fractional values")
                if lo < 0 or hi >= n_out:
                    raise ValueError(f"{what}: class labels must lie in [0, {n_out}) for a "
                                     f"model with {n_out} outputs, got labels from {lo} to "
                                     f"{hi}")
                y = xp.astype(y, xp.int64)
        elif isinstance(loss, _losses.BinaryCrossEntropy) and not loss.from_logits:
            lo, hi = float(xp.min(y)), float(xp.max(y))
            if lo < 0 or hi > 1:
                raise ValueError(f"{what}: binary targets must lie in [0, 1], got values "
                                 f"from {lo} to {hi}")
        if not backend.is_floating(y.dtype) and not (
                isinstance(loss, _losses.CategoricalCrossEntropy) and y.ndim == 1):
            y = xp.astype(y, backend.dtype)
        target = loss.prepare_target(xp, y, n_out)
        if target.dtype != backend.dtype and backend.is_floating(target.dtype):
            target = xp.astype(target, backend.dtype)
        return target

    def _as_data(self, X, y, loss, what: str = "", device_data=None):
        """Validate and place a dataset: on the model's device, or in host memory to be
        streamed batch by batch when it does not fit there (``device_data=False``).

        Returns
        -------
        X, T : arrays on the device (or host NumPy arrays when streaming)
        streaming : bool
        """
        xs, ys = f"{what}X" if what else "X", f"{what}y" if what else "y"
        backend = self._placement(X, device_data)
        X = self._as_input(X, xs, backend)
        xp = backend.xp
        if X.shape[0] == 0:
            raise ValueError(f"{xs}: expected at least one sample, got {describe(X)}")
        if not _all_finite(xp, X):
            raise ValueError(f"{xs}: contains NaN or Inf")
        if self.preprocessor is not None:
            X = self.preprocessor.transform(X, backend)
        return X, self._as_target(y, X.shape[0], loss, ys, backend), backend is not self.backend

    def _placement(self, X, device_data):
        """The backend a dataset should live on (the model's, or a host NumPy one)."""
        if device_data is None:
            if self.backend.owns(X):
                return self.backend
            nbytes = getattr(X, "nbytes", None)
            if nbytes is None:
                nbytes = host_array(X).nbytes if hasattr(X, "__len__") else 0
            device_data = self.backend.fits_on_device(int(nbytes))
        if device_data:
            return self.backend
        return NumpyBackend(dtype=self.backend.dtype_name)

    # ------------------------------------------------------------------ training
    def fit(self, X, y, loss="mse", optimizer="adam", epochs: int = 10, batch_size: int = 32,
            validation_data=None, shuffle: bool = True, verbose: int = 1,
            seed: int | None = None, metrics=None, device_data: bool | None = None,
            callbacks=None, on_divergence: str = "raise", resume_from=None) -> History:
        """Train the model.

        Parameters
        ----------
        X : (N, input_dim) array-like (NumPy, CuPy, Array API array or list)
        y : (N,) or (N, output_dim)
            Binary 0/1 targets, integer class labels, one-hot rows or regression values.
        loss : str or Loss, default "mse"
        optimizer : str or Optimizer, default "adam"
            A name gets its default hyper-parameters; pass an object to set them.
        epochs, batch_size : int > 0
        validation_data : (X_val, y_val), optional
        shuffle : bool, default True
            Reshuffle on the device every epoch.
        verbose : int, default 1
            0 prints nothing, 1 prints one line per epoch.
        seed : int, optional
            Reseeds shuffling and dropout.
        metrics : list of str, optional
            Default ``["accuracy"]`` for cross-entropy losses, ``["mae"]`` otherwise.
        callbacks : list of gpunn.callbacks.Callback, optional
            Early stopping, checkpoints, learning-rate schedules, your own.
        device_data : bool, optional
            Keep the dataset on the model's device (True) or in host memory, streaming
            batches to the device (False). Default: on the device when it fits (twice its
            size, for the shuffled copy, within 80% of free GPU memory); always on the CPU.
        on_divergence : {"raise", "stop", "skip"}, default "raise"
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
            history are restored and training continues up to ``epochs``. On the CPU the
            result is bitwise identical to an uninterrupted run.

        Returns
        -------
        History
            Training stops cleanly after the current step on Ctrl-C and returns the
            completed epochs; the model stays usable.
        """
        # Everything is validated before any state (parameters, optimiser, RNG) changes.
        epochs = _positive_int(epochs, "epochs")
        batch_size = _positive_int(batch_size, "batch_size")
        if verbose not in (0, 1, 2, True, False):
            raise ValueError(f"verbose: expected 0, 1 or 2, got {verbose!r}")
        loss = _losses.get(loss)
        optimizer = _optim.get(optimizer)
        metric_objs = self._metrics_for(loss, metrics)
        callbacks = list(callbacks or [])
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}]: expected a gpunn.callbacks.Callback, got "
                                f"{describe(cb)}")
        if on_divergence not in ("raise", "stop", "skip", "off"):
            raise ValueError(f"on_divergence: expected 'raise', 'stop', 'skip' or 'off', got "
                             f"{on_divergence!r}")
        resume = self._read_checkpoint(resume_from) if resume_from is not None else None
        with self.backend.context():
            if device_data not in (None, True, False):
                raise ValueError(f"device_data: expected None, True or False, got "
                                 f"{device_data!r}")
            X, T, streaming = self._as_data(X, y, loss, device_data=device_data)
            val = None
            if validation_data is not None:
                if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                    raise ValueError("validation_data: expected a pair (X_val, y_val), got "
                                     f"{describe(validation_data)}")
                val = self._as_data(*validation_data, loss, what="val_",
                                    device_data=device_data)
            if self.backend.low_precision:
                l2 = [layer.label for layer in self.layers if getattr(layer, "kernel_l2", 0)]
                if l2:
                    raise ValueError(f"{l2[0]}: kernel_l2 is not supported with "
                                     f"dtype={self.dtype!r}; use the optimiser's weight_decay")
            history, start = History(), 1
            if resume is not None:
                optimizer, history, start = self._restore_checkpoint(*resume)
            step_params, step_grads = self._step_lists()
            amp = self._mixed_precision(step_params)
            optimizer.attach(amp.master if amp else step_params,
                             amp.backend32 if amp else self.backend)
            self.optimizer, self.loss = optimizer, loss
            self.metrics = [m.name for m in metric_objs]
            if seed is not None and resume is None:
                self.backend.seed(seed)
            # Under loss scaling an overflow is an expected event that skips the step.
            quiet = self.backend.overflow_expected() if amp else contextlib.nullcontext()
            with quiet:
                if verbose == 1 and sys.stdout.isatty():
                    callbacks.append(ProgressBar(int(X.shape[0]), batch_size, epochs))
                run = _Run(loss, optimizer, metric_objs, epochs, batch_size, val, shuffle,
                           verbose, step_params, step_grads, amp, callbacks, on_divergence,
                           history, start)
                with _interrupt_flag() as interrupted:
                    return self._fit_loop(X, T, streaming, run, interrupted)

    def _mixed_precision(self, params):
        """The 16-bit master-weight state, (re)built when the parameters moved on."""
        if not self.backend.low_precision:
            self._amp = None
            return None
        amp = self._amp
        if amp is None or len(amp.params) != len(params) or any(
                a is not b for a, b in zip(amp.params, params)) or not amp.in_sync():
            # bfloat16 has float32's exponent range: no loss scaling needed (scale 1).
            bf16 = self.backend.dtype_name == "bfloat16"
            self._amp = MixedPrecision(self.backend, params, init_scale=1.0 if bf16 else 2.0**15,
                                       growth_interval=2**62 if bf16 else 2000)
        return self._amp

    @property
    def loss_scale(self) -> float | None:
        """Current dynamic loss scale of a float16 model (None otherwise)."""
        return self._amp.loss_scale if self._amp is not None else None

    def _metrics_for(self, loss, metrics) -> list:
        if metrics is None:
            classification = isinstance(loss, (_losses.BinaryCrossEntropy,
                                               _losses.CategoricalCrossEntropy))
            metrics = ["accuracy"] if classification else ["mae"]
        if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
            raise ValueError(f"metrics: expected a list of names, got {describe(metrics)}")
        return [_metrics.get(m) for m in metrics]

    def _accumulator(self):
        # float16 cannot count past 2048 (bfloat16 past 256): sums use float32 then.
        dtype = self.backend.xp.float32 if self.backend.low_precision else None
        return self.backend.zeros((), dtype=dtype)

    def _batches(self, X, T, batch_size: int, shuffle: bool, streaming: bool):
        """(x, t) batches on the device, in a fresh random order when ``shuffle``."""
        backend, xp = self.backend, self.backend.xp
        n = int(X.shape[0])
        if streaming:
            order = backend.to_numpy(backend.permutation(n)) if shuffle else None
            yield from backend.batches(X, T, order, batch_size)
            return
        if shuffle:
            perm = backend.permutation(n)
            X, T = xp.take(X, perm, axis=0), xp.take(T, perm, axis=0)
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)  # the standard leaves out-of-range stops undefined
            yield X[lo:hi, ...], T[lo:hi, ...]

    def _fit_loop(self, X, T, streaming, run, interrupted) -> History:
        xp = self.backend.xp
        n = int(X.shape[0])
        loss, optimizer, amp, history = run.loss, run.optimizer, run.amp, run.history
        fused = self._fused(loss)
        # With a flat buffer the gradient list is fixed; otherwise backward rebinds it.
        flat = self._flat is not None
        skip = run.on_divergence == "skip"
        run.callbacks = sorted(run.callbacks, key=lambda cb: getattr(cb, "order", 0))
        per_batch = [cb for cb in run.callbacks
                     if type(cb).on_batch_end is not Callback.on_batch_end]
        _setup_metrics(run.metrics, T)
        self.stop_training = False
        snapshot, every = None, 1
        for cb in run.callbacks:
            cb.on_train_begin(self)
        for epoch in range(run.start, run.epochs + 1):
            for cb in run.callbacks:
                cb.on_epoch_begin(self, epoch)
            # A host copy to roll back to; taken every epoch while it costs under ~5% of
            # an epoch (always on the CPU), less often for big models on a GPU.
            if run.on_divergence != "off" and (snapshot is None
                                               or epoch - snapshot.epoch >= every):
                snapshot = _Snapshot(self, optimizer, amp, epoch)
            start = time.perf_counter()
            total = self._accumulator()
            sums = [self._accumulator() for _ in run.metrics]
            dropped = None
            # Each step's loss, kept on the device: if the epoch's total is not finite,
            # this tells which step went first (no per-step check, no per-step sync).
            step_losses = None if skip else self.backend.zeros(
                (-(-n // run.batch_size),), dtype=total.dtype)
            seen = 0
            try:
                batches = self._batches(X, T, run.batch_size, run.shuffle, streaming)
                for batch, (xb, tb) in enumerate(batches):
                    value = self._train_step(xb, tb, loss, fused, optimizer, amp, run,
                                             None if flat else self.gradients, skip)
                    rows = xb.shape[0]
                    value = _cast(xp, value, total)
                    if skip:
                        finite = xp.isfinite(value)
                        value = xp.where(finite, value, xp.zeros_like(value))
                        miss = xp.astype(xp.logical_not(finite), xp.int64)
                        dropped = miss if dropped is None else dropped + miss
                    else:
                        step_losses[batch] = value
                    total = total + value * rows
                    for i, m in enumerate(run.metrics):
                        sums[i] = sums[i] + _cast(xp, m.batch(xp, loss.output, tb), total)
                    seen += rows
                    for cb in per_batch:
                        cb.on_batch_end(self, batch, seen, total)
                    if interrupted():
                        break
            except MemoryError as exc:
                if snapshot is not None:
                    snapshot.restore()
                self.backend.release_memory()
                raise DeviceMemoryError(self._oom_message(
                    run.batch_size, snapshot.epoch if snapshot else None)) from exc
            if interrupted():
                if run.verbose:
                    print(f"interrupted during epoch {epoch} after {seen} samples; "
                          f"returning {len(history.epoch)} completed epoch(s)", flush=True)
                break
            # The one host read of the epoch.
            total_host = float(total)
            if not math.isfinite(total_host) and run.on_divergence in ("raise", "stop"):
                losses = self.backend.to_numpy(step_losses)
                bad = int(np.argmax(~np.isfinite(losses)))
                snapshot.restore()
                error = TrainingDiverged(epoch, bad + 1, getattr(optimizer, "lr", None),
                                         snapshot.epoch)
                if run.on_divergence == "raise":
                    raise error
                if run.verbose:
                    print(f"stopped: {error}", flush=True)
                break
            logs = {"loss": total_host / n}
            logs.update({m.name: m.result(float(s), n) for m, s in zip(run.metrics, sums)})
            if skip:
                logs["skipped"] = float(dropped) if dropped is not None else 0.0
            elapsed = time.perf_counter() - start
            if snapshot is not None:
                every = max(1, math.ceil(snapshot.seconds / (0.05 * max(elapsed, 1e-9))))
            if run.val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate_arrays(
                    *run.val, loss, run.metrics, max(run.batch_size, 1024)).items()})
            # What a checkpoint written now needs to resume: the history includes this
            # epoch's logs as the callbacks leave them.
            self._train_state = _TrainState(epoch, self.backend.rng_state(), history, logs)
            for cb in run.callbacks:
                cb.on_epoch_end(self, epoch, logs)
            history.append(epoch, logs)
            if run.verbose:
                line = "  ".join(f"{k} {v:.4g}" if k in ("lr", "skipped") else f"{k} {v:.4f}"
                                 for k, v in logs.items())
                print(f"epoch {epoch:>{len(str(run.epochs))}}/{run.epochs}  {line}  "
                      f"{n / elapsed:,.0f} samples/s  {elapsed:.2f} s", file=sys.stdout,
                      flush=True)
            if self.stop_training:
                break
        for cb in run.callbacks:
            cb.on_train_end(self, history)
        return history

    def _train_step(self, xb, tb, loss, fused, optimizer, amp, run, gradients, skip):
        """Forward, loss, backward and update of one batch; returns the loss value."""
        out = self._forward(xb, training=True, logits=fused)
        value = self.backend.fused_loss(loss, out, tb) if fused else loss.forward(out, tb)
        grad = loss.backward()
        self._backward(amp.scale_grad(grad) if amp else grad, need_input_grad=False,
                       from_logits=fused)
        reg = self._regularization()
        if reg is not None:
            value = value + reg
        grads = run.grads if gradients is None else gradients()
        if amp is not None:
            amp.step(optimizer, grads)
        elif skip:
            xp = self.backend.xp
            ok = xp.isfinite(value)
            for g in grads:
                ok = xp.logical_and(ok, xp.all(xp.isfinite(g)))
            optimizer.masked_step(run.params, grads, ok)
        else:
            optimizer.step(run.params, grads)
        return value

    def _step_closure(self, x, y):
        """A function running one training step on ``(x, y)`` exactly as ``fit`` runs it
        per batch, with the loss and optimiser of the last ``fit``; inputs are checked and
        placed first, so the step itself never waits on the host (the benchmark captures
        it in a CUDA graph to count its kernel launches)."""
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("_step_closure: call fit first (it attaches the optimiser)")
        loss, optimizer, amp = self.loss, self.optimizer, self._amp
        with self.backend.context():
            x = self._as_input(x)
            t = self._as_target(y, int(x.shape[0]), loss)
        params, grads = self._step_lists()
        run = _Run(loss, optimizer, [], 1, int(x.shape[0]), None, False, 0, params, grads,
                   amp, [], "off", History(), 1)
        fused = self._fused(loss)
        gradients = None if self._flat is not None else self.gradients

        def step():
            with self.backend.context():
                return self._train_step(x, t, loss, fused, optimizer, amp, run, gradients,
                                        False)

        return step

    def _oom_message(self, batch_size: int, restored_epoch: int | None) -> str:
        itemsize = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[self.dtype]
        n_params = self.count_params()
        state = len(self.optimizer._state_keys) if self.optimizer is not None else 2
        fixed = n_params * (2 + state) * itemsize
        widths = [self.input_dim or 0] + [lay.out_features for lay in self.layers
                                          if lay.out_features]
        per_batch = 2 * batch_size * sum(widths) * itemsize
        return (f"out of memory on {self.device} while training with batch_size="
                f"{batch_size}: the model needs about {fixed / 2**20:,.1f} MiB for "
                f"parameters, gradients and optimiser state plus about "
                f"{per_batch / 2**20:,.1f} MiB of activations per batch (and the dataset, "
                f"unless streamed). Lower batch_size (or use device_data=False); "
                + (f"the parameters are back at the start of epoch {restored_epoch} and "
                   if restored_epoch else "")
                + "memory was released")

    def _read_checkpoint(self, path):
        """Load and check a training checkpoint against this model (no state changes)."""
        from .io import load

        ckpt = load(path, device=self.backend)
        mine = [(type(lay).__name__, lay.config()) for lay in self.layers]
        theirs = [(type(lay).__name__, lay.config()) for lay in ckpt.layers]
        if mine != theirs:
            raise ValueError(f"resume_from: {path} holds a different architecture "
                             f"({[t for t, _ in theirs]} with configs that differ); build the "
                             "model as it was when the checkpoint was written")
        state = ckpt._train_state
        if state is not None and state.get("rng") is not None:
            try:  # check on a scratch generator: restoring must not fail half-way
                np.random.default_rng().bit_generator.state = state["rng"]
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"resume_from: {path} has an unusable random-generator "
                                 f"state ({exc})") from None
        if state is None or ckpt.optimizer is None:
            raise ValueError(f"resume_from: {path} is not a training checkpoint (it has no "
                             "epoch counter or optimiser state); write one with "
                             "gpunn.callbacks.ModelCheckpoint")
        return ckpt, state

    def _restore_checkpoint(self, ckpt, state):
        for mine, saved in zip(self.parameters(), ckpt.parameters()):
            mine[...] = self.backend.asarray(ckpt.backend.to_numpy(saved), dtype=mine.dtype)
        if state.get("rng") is not None:
            self.backend.set_rng_state(state["rng"])
        if ckpt.preprocessor is not None:
            self.preprocessor = ckpt.preprocessor
        history = History()
        for i in range(len(next(iter(state["history"].values()), []))):
            history.append(i + 1, {k: v[i] for k, v in state["history"].items()})
        return ckpt.optimizer, history, int(state["epoch"]) + 1

    def _evaluate_arrays(self, X, T, streaming, loss, metric_objs, batch_size) -> dict:
        xp = self.backend.xp
        fused = self._fused(loss)
        n = int(X.shape[0])
        total = self._accumulator()
        sums = [self._accumulator() for _ in metric_objs]
        reg = self._regularization()
        _setup_metrics(metric_objs, T)
        for xb, tb in self._batches(X, T, batch_size, False, streaming):
            out = self._forward(xb, training=False, logits=fused)
            value = (self.backend.fused_loss(loss, out, tb) if fused
                     else loss.forward(out, tb))
            total = total + _cast(xp, value, total) * xb.shape[0]
            for i, m in enumerate(metric_objs):
                sums[i] = sums[i] + _cast(xp, m.batch(xp, loss.output, tb), total)
        result = {"loss": float(total) / n + (float(reg) if reg is not None else 0.0)}
        result.update({m.name: m.result(float(s), n) for m, s in zip(metric_objs, sums)})
        return result

    def evaluate(self, X, y, loss=None, batch_size: int = 1024, metrics=None) -> dict:
        """Loss and metrics on a dataset, in inference mode.

        Parameters
        ----------
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
        loss = loss if loss is not None else self.loss
        if loss is None:
            raise ValueError("evaluate: no loss given and the model has not been fit; pass "
                             "loss='mse' / 'binary_crossentropy' / ...")
        loss = _losses.get(loss)
        batch_size = _positive_int(batch_size, "batch_size")
        metric_objs = self._metrics_for(loss, metrics if metrics is not None else (
            self.metrics or None))
        with self.backend.context():
            return self._evaluate_arrays(*self._as_data(X, y, loss), loss, metric_objs,
                                         batch_size)

    def predict(self, X, batch_size: int = 4096):
        """Model output in inference mode (probabilities for sigmoid/softmax outputs).

        Parameters
        ----------
        X : (N, input_dim)

        Returns
        -------
        (N, output_dim) array on the model's device; ``gpunn.to_numpy`` copies it to host.
        """
        batch_size = _positive_int(batch_size, "batch_size")
        xp = self.backend.xp
        with self.backend.context():
            placement = self._placement(X, None)
            X = self._as_input(X, backend=placement)
            if self.preprocessor is not None:
                X = self.preprocessor.transform(X, placement)
            streaming = not self.backend.owns(X)
            n = int(X.shape[0])
            if streaming:
                parts = [self._forward(xb, training=False)
                         for xb, _ in self.backend.batches(X, None, None, batch_size)]
            else:
                parts = [self._forward(X[lo:min(lo + batch_size, n), ...], training=False)
                         for lo in range(0, n, batch_size)]
            if not parts:
                return xp.zeros((0, self.output_dim), dtype=self.backend.dtype,
                                device=self.backend.device)
            return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


class _TrainState(dict):
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


class _Run:
    """The settings of one ``fit`` call, handed to the training loop."""

    def __init__(self, loss, optimizer, metrics, epochs, batch_size, val, shuffle, verbose,
                 params, grads, amp, callbacks, on_divergence, history, start):
        self.loss, self.optimizer, self.metrics = loss, optimizer, metrics
        self.epochs, self.batch_size, self.val = epochs, batch_size, val
        self.shuffle, self.verbose, self.params, self.grads = shuffle, verbose, params, grads
        self.amp, self.callbacks, self.on_divergence = amp, callbacks, on_divergence
        self.history, self.start = history, start


class _Snapshot:
    """Parameters and optimiser state at the start of an epoch, kept on the host.

    Host memory, not device memory: a divergence or out-of-memory error puts the model
    back here without having held a second copy of the model on the GPU.
    """

    def __init__(self, model, optimizer, amp, epoch: int):
        started = time.perf_counter()
        self.epoch = epoch
        be = model.backend
        self.model, self.optimizer, self.amp = model, optimizer, amp
        self.params = [np.array(be.to_numpy(p)) for p in model.parameters()]
        obe = optimizer.backend
        self.state = [{k: np.array(obe.to_numpy(v)) for k, v in s.items()}
                      for s in optimizer.state]
        self.t = optimizer.t
        self.master = None if amp is None else [np.array(amp.backend32.to_numpy(m))
                                                for m in amp.master]
        self.seconds = time.perf_counter() - started

    def restore(self) -> None:
        be, obe = self.model.backend, self.optimizer.backend
        for p, saved in zip(self.model.parameters(), self.params):
            p[...] = be.asarray(saved, dtype=p.dtype)
        for s, saved in zip(self.optimizer.state, self.state):
            for k, v in saved.items():
                s[k] = obe.asarray(v, dtype=obe.dtype)
        self.optimizer.t = self.t
        if self.amp is not None:
            for m, saved in zip(self.amp.master, self.master):
                m[...] = self.amp.backend32.asarray(saved)


@contextlib.contextmanager
def _interrupt_flag():
    """While training, Ctrl-C asks the loop to stop after the current step; a second
    Ctrl-C interrupts at once. Yields a function telling whether it was pressed."""
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
        print("\ngpunn: stopping after the current step (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def _setup_metrics(metrics, T) -> None:
    """Show each metric the whole target, in the namespace that holds it: the device's, or
    NumPy's when the dataset streams from host memory."""
    import array_api_compat

    xp = array_api_compat.array_namespace(T)
    for m in metrics:
        m.setup(xp, T)


def _cast(xp, value, like):
    """``value`` in the dtype of the accumulator ``like`` (a no-op unless float16)."""
    return value if value.dtype == like.dtype else xp.astype(value, like.dtype)


def _all_finite(xp, a) -> bool:
    """True when ``a`` has no NaN or Inf; one reduction (no mask array) when it is clean."""
    # A finite sum proves every element finite; an infinite one may just be overflow of
    # large finite values, so only then pay for the element-wise test.
    if a.dtype == getattr(xp, "float16", None):  # a float16 sum overflows at 65504
        return bool(xp.all(xp.isfinite(a)))
    return bool(xp.isfinite(xp.sum(a))) or bool(xp.all(xp.isfinite(a)))


def _check_chain(layers) -> None:
    width, source = None, None
    for i, layer in enumerate(layers):
        if layer.in_features is not None and width is not None and layer.in_features != width:
            raise ValueError(f"layers do not chain: layer {i} ({layer!r}) expects "
                             f"in_features={layer.in_features}, but layer {source} outputs "
                             f"{width} features")
        new = layer.output_shape(width)
        if new != width:
            width, source = new, f"{i} ({layer!r})"
