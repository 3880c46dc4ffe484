"""The layer contract: a tree of layers with parameters, buffers and child layers.

A layer owns
- ``params``: trainable arrays, with ``grads`` (same keys) filled by ``backward``;
- ``buffers``: non-trainable state (running statistics, counters) that is saved, moved,
  cloned, rolled back and broadcast to ranks like a parameter, but never stepped;
- child layers (:meth:`Layer.add`), named: a parameter's path is its layers' names and its
  key joined by dots, ``"2.0.W"`` (the first layer of the third layer's block).

One walk over the tree (:meth:`Layer.walk`) serves everything that visits a model's
arrays: the parameter store, device moves, copies, snapshots, files, ONNX export,
broadcast and gradcheck. A new layer type is one class: its parameters and buffers, its
``forward``/``backward``, its shape rule and its config; :func:`register` makes model
files able to rebuild it.

Shapes are per sample, batch first: ``(features,)``, ``(channels, length)``,
``(channels, height, width)``; ``output_shape(input_shape)`` infers a layer's output. A
size a layer takes at any value (a convolution's height and width) is :data:`ANY_SIZE`,
shown as ``?``: ``Conv2D(1, 8, 3).input_shape()`` is ``(1, ?, ?)``.
"""

from __future__ import annotations

import copy
import numbers
import weakref

import numpy as np

from ..backend.ops import host_array, same_device
from ..errors import describe

#: Layer types a model file may name, by registered name (see :func:`register`).
LAYERS: dict[str, type] = {}


def register(cls=None, *, name: str | None = None):
    """Class decorator: make a layer type known to model files by ``name`` (default the
    class name). ``@gn.register_layer`` on a user's layer lets ``gn.load`` rebuild it.

    Raises
    ------
    ValueError
        Another class is registered under that name already.
    """
    def deco(klass):
        if not (isinstance(klass, type) and issubclass(klass, Layer)):
            raise TypeError(f"register_layer: expected a Layer subclass, got {klass!r}")
        key = name or klass.__name__
        owner = LAYERS.get(key, klass)
        # The same class defined again (a module reloaded, a notebook cell re-run) takes
        # its name back; another class of the same name is refused, never swapped in.
        if owner is not klass and (owner.__module__, owner.__qualname__) != (
                klass.__module__, klass.__qualname__):
            raise ValueError(f"register_layer: {key!r} is already registered to "
                             f"{LAYERS[key].__module__}.{LAYERS[key].__qualname__}")
        LAYERS[key] = klass
        klass.registered_name = key
        return klass

    return deco(cls) if cls is not None else deco


def positive_int(value, what: str) -> int:
    """``value`` as an int > 0, or a ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    return int(value)


class _AnySize(int):
    """A per-sample dimension a layer takes at any size (a convolution's height and width):
    equal to every size, shown as ``?``. An int (0) so that shape arithmetic elsewhere
    (products, sizes) stays defined; layers test for it with :func:`is_any_size`."""

    def __new__(cls):
        return super().__new__(cls, 0)

    def __eq__(self, other):
        # Compared with a plain int the reflected __eq__ of this subclass runs first, so
        # ``(1, 8, 8) == (1, ANY_SIZE, ANY_SIZE)`` holds wherever shapes are compared.
        return isinstance(other, int) and not isinstance(other, bool)

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = int.__hash__

    def __repr__(self) -> str:
        return "?"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format("?", spec.rstrip("d"))

    def __reduce__(self):
        return "ANY_SIZE"  # copies and pickles are the one module-level object


#: A dimension of any size in a per-sample shape: ``Conv2D(1, 8, 3).input_shape()`` is
#: ``(1, ANY_SIZE, ANY_SIZE)``, and an output size that depends on it is ``ANY_SIZE``.
ANY_SIZE = _AnySize()


def is_any_size(dim) -> bool:
    """Whether a per-sample dimension is :data:`ANY_SIZE` (not known until data comes)."""
    return isinstance(dim, _AnySize)


def known_size(shape) -> int | None:
    """The number of values of a per-sample shape, or None when a dimension is free."""
    if shape is None or any(is_any_size(d) for d in shape):
        return None
    size = 1
    for d in shape:
        size *= int(d)
    return size


def show_shape(shape) -> str:
    """``(batch, 1, ?, ?)``: a per-sample shape with its batch axis, for messages."""
    return "(batch" + "".join(f", {d}" for d in shape) + ")"


def as_shape(shape, what: str) -> tuple:
    """A per-sample shape: an int or a tuple of positive ints."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise ValueError(f"{what}: expected a per-sample shape (a positive int or a tuple "
                         f"of them), got {describe(shape)}")
    return tuple(positive_int(d, what) for d in shape)


class Layer:
    """Base class of every layer (leaves and blocks).

    Attributes
    ----------
    params : dict of str -> array
        Trainable arrays of this layer itself (not its children's).
    grads : dict of str -> array
        Gradients of the last backward, same keys and shapes as ``params``.
    buffers : dict of str -> array
        Non-trainable state of this layer itself.
    backend : Backend or None
        Set by :meth:`build`.
    name : str or None
        How errors and summaries refer to the layer.
    registered_name : str
        The type name model files store (see :func:`register`).
    """

    registered_name: str | None = None
    #: ``to_onnx(graph, x, path) -> output name`` adds the layer's inference nodes to an
    #: ONNX graph (see gpunn.files.onnx_export); None: the layer has no ONNX form.
    to_onnx = None
    #: What forward keeps for backward; :meth:`forget` drops it.
    _cached: tuple = ()
    #: Names of this layer's parameters and buffers that must hold no negative value (a
    #: variance): model files holding one are refused.
    nonnegative: tuple[str, ...] = ()

    def __init__(self, name: str | None = None):
        self.name = name
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self._children: dict[str, Layer] = {}
        self.backend = None
        self._parent_ref = None  # weak: a layer of a model that is gone is free again

    @property
    def _parent(self):
        """The block or model this layer belongs to (at most one), or None."""
        return self._parent_ref() if self._parent_ref is not None else None

    # ------------------------------------------------------------------ identity
    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe_args()})"

    def _describe_args(self) -> str:
        return ""

    @property
    def label(self) -> str:
        """How errors refer to this layer."""
        return f"layer {self.name!r} ({self!r})" if self.name else f"layer {self!r}"

    # ------------------------------------------------------------------ the tree
    def add(self, name: str, layer: Layer) -> Layer:
        """Make ``layer`` a child called ``name``; returns it.

        Raises
        ------
        ValueError
            ``layer`` already belongs to another block (its activations and gradients
            would be mixed), or ``name`` is taken or not a plain name.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.label}: child {name!r} must be a gpunn Layer, got "
                            f"{describe(layer)}")
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise ValueError(f"{self.label}: child names are non-empty strings without "
                             f"'.' or '/', got {name!r}")
        if name in self._children:
            raise ValueError(f"{self.label}: a child called {name!r} exists already")
        if layer._parent is not None or layer is self:
            raise ValueError(f"{layer.label} already belongs to a block; a layer keeps its "
                             "own activations and gradients, so use a new layer (or "
                             "layer.clone()) for each position")
        self._children[name] = layer
        layer._parent_ref = weakref.ref(self)
        self._children_changed()
        return layer

    def _children_changed(self) -> None:
        """Called when a child was added (or a clone got its own): a block refreshes what
        it derives from its children."""

    def children(self) -> dict:
        """The direct child layers by name (in order)."""
        return dict(self._children)

    def walk(self, prefix: str = ""):
        """Yield ``(path, layer)`` for this layer and every descendant, parents first;
        the root's path is ``prefix`` (``""`` by default)."""
        yield prefix, self
        for key, child in self._children.items():
            yield from child.walk(f"{prefix}.{key}" if prefix else key)

    def named_parameters(self) -> list:
        """``[(path, layer, key)]`` of every parameter in the tree, in a fixed order
        (parents before children, each layer's keys in insertion order)."""
        return [(_join(path, key), layer, key) for path, layer in self.walk()
                for key in layer.params]

    def named_buffers(self) -> list:
        """``[(path, layer, key)]`` of every buffer in the tree."""
        return [(_join(path, key), layer, key) for path, layer in self.walk()
                for key in layer.buffers]

    def leaves(self) -> list:
        """The layers without children, in order."""
        return [layer for _, layer in self.walk() if not layer._children]

    def output_layer(self):
        """The leaf whose output is this layer's output, or None when the output is a
        combination (a residual sum): a loss may take its pre-activation."""
        return self if not self._children else None

    # ------------------------------------------------------------------ shapes
    def input_shape(self) -> tuple | None:
        """The per-sample input shape this layer requires, or None when any works."""
        return None

    def output_shape(self, input_shape: tuple | None) -> tuple | None:
        """The per-sample output shape for ``input_shape`` (None: unknown); a ValueError
        naming the layer when the input does not fit it."""
        return input_shape

    # ------------------------------------------------------------------ building, devices
    def build(self, backend, input_shape: tuple | None = None) -> Layer:
        """Allocate this layer's parameters and buffers on ``backend`` (drawing from its
        generator), then its children's. Returns self."""
        self.backend = backend
        self.allocate(backend)
        shape = input_shape
        for child in self._children.values():
            if child.backend is None or not child._allocated():
                child.build(backend, shape)
            else:
                Layer.to(child, backend)
            shape = child.output_shape(shape) if shape is not None else None
        return self

    def allocate(self, backend) -> None:
        """Create this layer's parameters and buffers on ``backend`` (with
        :meth:`add_param` and :meth:`add_buffer`); called by :meth:`build`. Nothing by
        default."""

    def add_param(self, key: str, value):
        """Register a trainable array (on this layer's backend) with a zero gradient;
        returns it. A parameter's shape is fixed from then on (:meth:`param_shapes`)."""
        backend = self.backend
        value = backend.asarray(value, dtype=backend.dtype)
        _check_declared(self, "param", key, value, self.param_shapes())
        self.params[key] = value
        self.grads[key] = backend.zeros(tuple(value.shape))
        return value

    def add_buffer(self, key: str, value):
        """Register a non-trainable array (running statistics, counters): saved, moved,
        cloned, rolled back and broadcast with the parameters, never stepped. Floating
        buffers take the backend's dtype; integer ones keep theirs. Returns it."""
        value = self.backend.asarray(value)
        _check_declared(self, "buffer", key, value, self.buffer_shapes())
        self.buffers[key] = value
        return value

    def _allocated(self) -> bool:
        return set(self.param_shapes()) <= set(self.params) and \
            set(self.buffer_shapes()) <= set(self.buffers)

    def to(self, backend) -> Layer:
        """Move this layer's arrays, and its children's, to ``backend`` (through the host
        when devices differ)."""
        for _, layer in self.walk():
            old = layer.backend
            cross = old is not None and not same_device(backend, old)
            for store, dtype in ((layer.params, backend.dtype), (layer.grads, backend.dtype),
                                 (layer.buffers, None)):
                for key, value in store.items():
                    value = host_array(value) if cross else value
                    store[key] = backend.asarray(value, dtype=dtype if dtype is not None
                                                 else _buffer_dtype(backend, value))
            layer.backend = backend
        return self

    def clone(self, backend=None) -> Layer:
        """An independent deep copy on ``backend`` (default: the same): its arrays and
        child layers are copies, its settings shared; it belongs to no block."""
        backend = backend or self.backend
        new = copy.copy(self)
        new._parent_ref = None
        for attr in self._cached:  # nothing of the last batch comes along
            setattr(new, attr, None)
        new._children = {}
        for key, child in self._children.items():
            twin = child.clone(backend)
            twin._parent_ref = weakref.ref(new)
            new._children[key] = twin
        new._children_changed()
        new.params, new.grads, new.buffers = {}, {}, {}
        with_dtype = backend is not None and self.backend is not None
        for src, dst in ((self.params, new.params), (self.grads, new.grads),
                         (self.buffers, new.buffers)):
            for key, value in src.items():
                if with_dtype:
                    value = backend.asarray(host_array(value) if not same_device(
                        backend, self.backend) else value, dtype=_dtype_for(
                            backend, value, src is not self.buffers))
                    value = backend.xp.asarray(value, copy=True)
                dst[key] = value
        new.backend = backend
        return new

    def forget(self) -> None:
        """Drop what the last forward kept for backward, here and in children (``fit``,
        ``evaluate`` and ``predict`` call it, so no batch of their data stays alive)."""
        for _, layer in self.walk():
            for attr in layer._cached:
                setattr(layer, attr, None)

    # ------------------------------------------------------------------ computing
    def forward(self, x, training: bool = False):
        """Output of the layer for input ``x`` ``(batch, *input_shape)``."""
        raise NotImplementedError

    def backward(self, grad_out):
        """Fill ``grads`` (here and in children) and return the gradient w.r.t. the last
        forward's input."""
        raise NotImplementedError

    def regularization_loss(self):
        """Penalty this layer and its children add to the loss (None when none)."""
        total = None
        for _, layer in self.walk():
            r = layer.penalty()
            if r is not None:
                total = r if total is None else total + r
        return total

    def penalty(self):
        """This layer's own penalty added to the loss (e.g. ``kernel_l2 * sum(W**2)``, a
        0-d array), or None; its gradient is the layer's to add in ``backward``."""
        return None

    # ------------------------------------------------------------------ description
    def param_shapes(self) -> dict:
        """Shapes of this layer's own parameters (what :meth:`build` creates)."""
        return {}

    def buffer_shapes(self) -> dict:
        """Shapes of this layer's own buffers."""
        return {}

    def get_config(self) -> dict:
        """Constructor arguments (JSON values); ``from_config`` rebuilds the layer. A
        block's config holds its children's specs."""
        return {}

    def config(self) -> dict:
        """Alias of :meth:`get_config`."""
        return self.get_config()

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        """A new, unbuilt layer from :meth:`get_config`'s dict."""
        return cls(**config)

    def spec(self) -> dict:
        """``{"type", "name", "config"}``: what a model file stores for this layer.

        Raises
        ------
        TypeError
            The layer's class is not registered (see :func:`register`).
        """
        kind = self.registered_name
        own = type(self)
        if kind is None or (LAYERS.get(kind) is not own
                            and own.__dict__.get("_serializes_as") != kind):
            raise TypeError(f"{self.label}: {own.__name__} is not a registered layer type; "
                            "decorate the class with @gpunn.register_layer so model files "
                            "can rebuild it")
        return {"type": kind, "name": self.name, "config": self.get_config()}

    def _require_built(self):
        if self.backend is None:
            raise RuntimeError(f"{self.label} is not built: call layer.build(backend) or put "
                               "it in a Sequential")

    def _require_forward(self, attr: str):
        if getattr(self, attr, None) is None:
            raise RuntimeError(f"{self.label}: backward called before forward")


def layer_from_spec(spec, where: str = "layer") -> Layer:
    """The unbuilt layer a :meth:`Layer.spec` dict describes (children included).

    Raises
    ------
    ValueError, TypeError
        Naming ``where``: an unknown type, or a config the class refuses.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or \
            not isinstance(spec.get("config"), dict):
        raise ValueError(f"{where}: expected {{'type': str, 'config': dict}}, got "
                         f"{str(spec)[:80]}")
    cls = LAYERS.get(spec["type"])
    if cls is None:
        raise ValueError(f"{where}: unknown layer type {spec['type']!r}; known: "
                         f"{', '.join(sorted(LAYERS))} (a user's layer must be imported and "
                         "registered with @gpunn.register_layer before loading)")
    try:
        layer = cls.from_config(dict(spec["config"]))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where} ({spec['type']}): invalid config ({exc})") from None
    name = spec.get("name")
    layer.name = name if isinstance(name, str) else None
    return layer


def _check_declared(layer, kind: str, key: str, value, declared: dict) -> None:
    """Model files read arrays by the shapes a layer declares from its config alone, so
    an undeclared array would be lost on saving and loading: refused when created."""
    if tuple(declared.get(key, ())) != tuple(value.shape) or key not in declared:
        raise TypeError(f"{layer.label}: add_{kind}({key!r}) of shape {tuple(value.shape)}, "
                        f"but {type(layer).__name__}.{kind}_shapes() declares "
                        f"{dict(declared)}; declare every {kind} there (from the config) so "
                        "model files can read it back")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _dtype_for(backend, value, trainable: bool):
    return backend.dtype if trainable else _buffer_dtype(backend, value)


def _buffer_dtype(backend, value):
    """Buffers keep integer dtypes (counters); floating buffers follow the backend's."""
    dtype = value.dtype
    if isinstance(dtype, np.dtype):
        return backend.dtype if dtype.kind == "f" else None
    return backend.dtype if backend.is_floating(dtype) else None
