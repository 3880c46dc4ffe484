"""``Sequential``: a block of layers that is also a model.

As a layer (nested in another block) it is a :class:`gpunn.layers.Block`. As the root of
a model it also owns a device, the parameter store and what is about the network:
building, forward and backward passes, parameters, device moves, prediction and a
summary; training (:mod:`gpunn.training`) and files (:mod:`gpunn.files.format`) are reached
through thin entry points (``fit``, ``evaluate``, ``save``).
"""

from __future__ import annotations

from . import distributed as _distributed
from . import training as _training
from .architecture import layers_from_architecture
from .backend import get_backend
from .callbacks import History
from .errors import describe
from .layers import Block, Dense, Layer, register
from .params import ParameterStore

__all__ = ["Sequential", "History"]

@register
class Sequential(Block):
    """Layers applied one after another: a model, and a layer that nests in others.

    Parameters
    ----------
    layers : list of Layer
        Shapes must chain: each layer accepts what the one before it outputs (a Dense's
        ``in_features`` equals the previous output width). Blocks (``Residual``, another
        ``Sequential``) nest; parameters are named by path (``"2.0.W"``).
    device : str, Backend or module, default "auto"
        See :func:`gpunn.get_backend`; ``None`` reads ``GPUNN_DEVICE``.
    dtype : str, optional
        ``"float32"`` (default), ``"float64"``, ``"float16"``, ``"bfloat16"`` (CUDA);
        a Backend given as ``device`` keeps its own.
    seed : int, optional
        Seeds weight initialisation (and, until ``fit(seed=...)`` reseeds it, dropout
        and shuffling).

    Attributes
    ----------
    loss, optimizer, metrics
        Those of the last ``fit`` (or of a loaded file).
    preprocessor : optional
        Applied to X by fit, evaluate and predict (e.g. a fitted Standardizer).
    target_scaler : Standardizer, optional
        Regression targets in standardised units: ``fit`` and ``evaluate`` standardise
        the ``y`` they are given with it (their loss and metrics are then in standardised
        units), and ``predict`` (and the ONNX export) turn the network's outputs back into
        the targets' own units. ``gpunn train`` sets one for regression unless
        ``--no-standardize``; set your own with ``Standardizer().fit(y.reshape(len(y),
        -1))``.
    extra : dict
        JSON-serialisable data saved with the model (class labels, task, ...).
    train_state : dict or None
        Epoch counter, generator state and history: what ``fit(resume_from=...)`` needs.

    Examples
    --------
    >>> import gpunn as gn
    >>> model = gn.Sequential([gn.Dense(2, 8, activation="tanh"),
    ...                        gn.Dense(8, 1, activation="sigmoid")], device="cpu", seed=0)
    >>> model.forward([[0.0, 1.0]]).shape
    (1, 1)
    """

    def __init__(self, layers, device="auto", dtype: str | None = None,
                 seed: int | None = None, name: str | None = None):
        super().__init__(layers, name=name)
        if _distributed.launched():  # join first: "auto" then finds this rank's own GPU
            _distributed.init()
        backend = get_backend(device if device is not None else None, dtype=dtype, seed=seed)
        # Inside the device's context: on cuda:N every allocation must land on GPU N.
        with backend.context():
            for i, layer in enumerate(self.layers):
                if layer.name is None:
                    layer.name = f"{type(layer).__name__.lower()}_{i}"
            Block.build(self, backend, self.input_shape())
        self.backend = backend
        self._store = ParameterStore(self, backend)  # views bound now: references stay valid
        self.optimizer = self.loss = None
        self.metrics: list[str] = []
        self.preprocessor = None
        self.target_scaler = None
        self.extra: dict = {}
        self.stop_training = False
        self.train_state = None
        self._fitting = False  # set by the training loop while it runs
        self._last_output_shape = None  # of the last public forward (checks backward)
        self._amp = None  # 16-bit only: the LossScaleOptimizer (master weights, scale)

    @property
    def store(self) -> ParameterStore:
        """The parameter store of this model (its flat parameter and gradient buffers);
        built on first use, rebuilt after a device move."""
        if self._store is None:
            self._store = ParameterStore(self, self.backend)
        return self._store

    def build(self, backend, input_shape=None):
        # Nested in another block: that block's model owns the parameter store.
        self._store = None
        return super().build(backend, input_shape)

    def clone(self, backend=None) -> Sequential:
        """A deep copy of the network (parameters, buffers, preprocessing, loss) without
        the optimiser's state or the training progress."""
        new = super().clone(backend)
        new._store = ParameterStore(new, new.backend)
        new.optimizer, new._amp, new.train_state, new._fitting = None, None, None, False
        new.metrics, new.extra = list(self.metrics), dict(self.extra)
        return new

    @classmethod
    def from_config(cls, config: dict):
        # A nested Sequential is built by the model it belongs to, on that model's device.
        return super().from_config({**config, "device": "cpu"})

    @classmethod
    def from_architecture(cls, architecture, **kwargs) -> Sequential:
        """Build a model from a list of layer dicts.

        Parameters
        ----------
        architecture : list of dict
            Each ``{"input_dim": int, "output_dim": int, "activation": str}`` (optional
            keys ``init``, ``kernel_l2``, ``activation_params`` and ``dropout``: a Dropout
            of that rate after the layer), or ``{"type": name, **arguments}``: a
            registered layer type or an activation (any case) and its constructor's
            arguments; blocks take ``"layers"``, a nested list. See
            :mod:`gpunn.architecture`.
        **kwargs
            ``device``, ``dtype``, ``seed`` for :class:`Sequential`.

        Examples
        --------
        >>> net = Sequential.from_architecture([
        ...     {"input_dim": 2, "output_dim": 25, "activation": "relu"},
        ...     {"input_dim": 25, "output_dim": 1, "activation": "sigmoid"}], device="cpu")
        >>> cnn = Sequential.from_architecture([
        ...     {"type": "reshape", "shape": [1, 40]},
        ...     {"type": "conv1d", "in_channels": 1, "out_channels": 8, "kernel_size": 5,
        ...      "stride": 2, "activation": "relu"},
        ...     {"type": "flatten"},
        ...     {"type": "dense", "in_features": 144, "out_features": 10,
        ...      "activation": "softmax"}], device="cpu")
        """
        return cls(layers_from_architecture(architecture), **kwargs)

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
        """Input feature count of a model on ``(batch, features)`` data (else None)."""
        shape = self.input_shape()
        return shape[0] if shape is not None and len(shape) == 1 else None

    @property
    def output_dim(self) -> int | None:
        """Output width: the last axis of the per-sample output shape (None: unknown)."""
        shape = self.output_shape(self.input_shape())
        return shape[-1] if shape else None

    @property
    def loss_scale(self) -> float | None:
        """Current loss scale of a 16-bit model (None otherwise)."""
        return self._amp.loss_scale if self._amp is not None else None

    def parameters(self) -> list:
        """All parameter arrays, layer by layer (``W`` before ``b``)."""
        return self.store.parameters()

    def gradients(self) -> list:
        """Gradients from the last backward, in the order of :meth:`parameters`."""
        return self.store.gradients()

    def count_params(self) -> int:
        return self.store.count()

    def regularization(self):
        """The layers' penalties (kernel_l2) as a 0-d device array, or None."""
        return self.regularization_loss()

    def summary(self, print_fn=print) -> str:
        """A table of layers (nested ones indented, with their paths), output shapes and
        parameter counts; printed and returned. Under several ranks (``mpiexec``) only
        rank 0 prints it with the default ``print`` (every rank holds the same model)."""
        rows = [("layer", "type", "output", "params")]

        def visit(block, shape, depth):
            for key, layer in block.children().items():
                before, shape = shape, layer.output_shape(shape)
                n = sum(int(p.size) for _, lay in layer.walk() for p in lay.params.values())
                out = "?" if shape is None else ", ".join(map(str, shape))
                kind = type(layer).__name__ if layer.children() else repr(layer)
                rows.append(("  " * depth + (layer.name or key), kind, f"(batch, {out})",
                             f"{n:,}"))
                if layer.children():
                    visit(layer, before, depth + 1)
            return shape

        visit(self, self.input_shape(), 0)
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"total parameters: {self.count_params():,} on {self.backend.describe()}")
        text = "\n".join(lines)
        if print_fn is not None and (print_fn is not print or _distributed.is_root()):
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r}, device={self.device!r}, dtype={self.dtype!r})"

    # ------------------------------------------------------------------ devices and files
    def to(self, device) -> Sequential:
        """Move parameters and optimiser state to ``device`` (any spec of get_backend);
        a RuntimeError while ``fit`` runs (its loop holds data and buffers on the device)."""
        if self._fitting:
            raise RuntimeError(f"model.to({device!r}) while fit is running (from a "
                               "callback?): the training loop holds this model's data and "
                               "optimiser on its device; move the model before or after fit")
        backend = get_backend(device, dtype=self.backend.dtype_name)
        with backend.context():
            Layer.to(self, backend)
            if self.optimizer is not None:
                # Under 16-bit training the optimiser works on the float32 master weights.
                self.optimizer.to(backend.with_dtype("float32") if self._amp is not None
                                  else backend)
            self.backend = backend
            self.store.build(backend)
            if self._amp is not None:
                self._amp.to(backend, self.store.step_lists()[0])
        return self

    def save(self, path, include_optimizer: bool = True) -> None:
        """Write the model (and optimiser state, preprocessing) to ``path``: ``.npz``, or
        ``.safetensors`` (``pip install "gpunn[safetensors]"``) for a file that PyTorch
        and other safetensors readers open too.

        The file is written atomically and holds no pickles; :func:`gpunn.load` reads it
        (either format) on any device. Under several ranks (``mpiexec``) only rank 0
        writes; the others, holding the same model, return at once.
        """
        from . import distributed
        from .files.write import save

        if not distributed.is_root():
            return

        save(self, path, include_optimizer=include_optimizer)

    def to_onnx(self, path, opset: int = 17) -> None:
        """Write the model for inference as an ONNX graph (``pip install "gpunn[onnx]"``):
        input ``"input"`` ``(batch, input_dim)`` float32 with the stored standardisation
        applied, output ``"output"`` ``(batch, output_dim)`` as :meth:`predict` returns;
        float32 whatever the model's dtype; opset 13 and newer (default 17). Written
        atomically; the graph is described at :mod:`gpunn.files.onnx_export`.
        """
        from .files.onnx_export import save_onnx

        save_onnx(self, path, opset=opset)

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x, training: bool = False):
        """Model output ``(batch, *output_shape)`` on the model's device for ``x (batch,
        *input_shape)`` (array or nested list); ``training`` enables dropout. Nested in a
        block, it is that block's step (:meth:`gpunn.layers.Block.forward`)."""
        if self._parent is not None:
            return Block.forward(self, x, training)
        with self.backend.context():
            out = Block.forward(self, _training.batches.as_input(self, x), training)
            self._last_output_shape = tuple(out.shape)
            return out

    def backward(self, grad, need_input_grad: bool = True):
        """Backpropagate ``dL/doutput`` of the last :meth:`forward` (its output's shape);
        fills every layer's ``grads``; returns ``dL/dinput``."""
        if self._parent is not None:
            return Block.backward(self, grad, need_input_grad)
        with self.backend.context():
            grad = self.backend.asarray(grad)
            expected = self._last_output_shape
            if expected is None:
                raise RuntimeError("backward: call forward(x, training=True) first")
            if tuple(grad.shape) != expected:
                raise ValueError(f"backward: expected a gradient of the last forward's "
                                 f"output shape {expected}, got {describe(grad)}")
            return Block.backward(self, grad, need_input_grad)

    def forward_batch(self, x, training: bool, logits: bool = False,
                      add_bias: bool = True):
        """:meth:`forward` on a checked device array; ``logits=True`` stops before the
        output layer's activation (its loss applies it, see ``Loss.logits_of``), and
        ``add_bias=False`` also before its bias (a fused loss adds it)."""
        if logits:
            return Block.forward_logits(self, x, training, add_bias)
        return Block.forward(self, x, training)

    def backward_batch(self, grad, need_input_grad: bool, logits: bool = False,
                       bias_done: bool = False):
        """:meth:`backward` on a device array (``dL/dz`` of the output layer when
        ``logits``; ``bias_done``: its bias gradient is already written); the first layer
        skips its input gradient unless it is needed."""
        if logits:
            return Block.backward_logits(self, grad, need_input_grad, bias_done)
        return Block.backward(self, grad, need_input_grad)

    def takes_logits(self, loss) -> bool:
        """True when ``loss`` can take the output layer's pre-activation (its logits
        form): the output is a Dense whose activation the loss applies itself."""
        out = self.output_layer()
        return isinstance(out, Dense) and loss.takes_logits_from(out.activation)

    # ------------------------------------------------------------------ training entry points
    def fit(self, X, y, loss=None, optimizer=None, epochs: int = 10, batch_size: int = 32,
            validation_data=None, shuffle: bool = True, verbose: int = 1,
            seed: int | None = None, metrics=None, device_data: bool | None = None,
            callbacks=None, on_divergence: str = "raise", resume_from=None,
            sample_weight=None, class_weight=None, batch_source=None,
            validation_split=None) -> History:
        """Train the model; returns a :class:`History`. Every argument is described at
        :func:`gpunn.training.fit`, which this calls."""
        return _training.fit(self, X, y, loss, optimizer, epochs, batch_size,
                             validation_data, shuffle, verbose, seed, metrics, device_data,
                             callbacks, on_divergence, resume_from, sample_weight,
                             class_weight, batch_source, validation_split)

    def evaluate(self, X, y, loss=None, batch_size: int = 1024, metrics=None,
                 sample_weight=None) -> dict:
        """Loss and metrics on a dataset, in inference mode: ``{"loss": float, "<metric>":
        float, ...}`` (see :func:`gpunn.training.evaluate`)."""
        return _training.evaluate(self, X, y, loss=loss, batch_size=batch_size,
                                 metrics=metrics, sample_weight=sample_weight)

    def predict(self, X, batch_size: int = 4096):
        """Model output in inference mode (probabilities for sigmoid/softmax outputs).

        Parameters
        ----------
        X : (N, input_dim)
            Any array :meth:`fit` takes (DLPack arrays such as PyTorch tensors included),
        or, for a model trained by ``gpunn train`` on a table or a built-in data set, a
        pandas DataFrame of the raw columns (as the file held them): encoded as training
        encoded them (one-hot categories, dates, fills), by the column decisions stored
        in ``extra["columns"]``.

        Returns
        -------
        (N, output_dim) array on the model's device; ``gpunn.to_numpy`` copies it to host.
        In the targets' own units when the model carries a ``target_scaler`` (as a
        regression trained by ``gpunn train`` does).
        """
        return _training.predict(self, _raw_columns(self, X), batch_size)


def _raw_columns(model, X):
    """A DataFrame of raw columns encoded by the model's stored column decisions; any
    other ``X`` as it is. Decisions about the rows (unseen categories, fills) are told as
    warnings, as ``gpunn predict`` tells them as notes."""
    if type(X).__name__ != "DataFrame" or not type(X).__module__.startswith("pandas"):
        return X
    extra = model.extra or {}
    columns = extra.get("columns") or [
        {"name": n, "kind": "numeric", "categories": None, "parse": None}
        for n in extra.get("feature_names") or []]
    if not columns:  # a model of arrays: a numeric frame is its array
        return X
    import warnings

    from .cli_data import columns_ok
    from .data.tables import frame_features

    if not columns_ok(columns):
        raise ValueError("predict: the model's saved column list is malformed; it was not "
                         "written by gpunn train, or was edited")
    encoded, notices = frame_features(X, columns, "X")
    for line in notices:
        warnings.warn(f"gpunn: {line}", UserWarning, stacklevel=3)
    return encoded
