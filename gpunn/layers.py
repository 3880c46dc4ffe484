"""Layers: the contract, ``Dense``, ``Dropout`` and activation layers.

Contract
--------
A layer owns ``params`` and ``grads`` (dicts with the same keys). ``forward(x, training)``
keeps what its backward needs; ``backward(grad_out)`` fills ``grads`` and returns the
gradient with respect to the layer's input. Parameters are updated in place, so a
reference to ``layer.params["W"]`` stays valid and writing into it sets the weights.
"""

from __future__ import annotations

import copy
import numbers

from . import activations as _act
from . import init as _init
from .backend.ops import host_array, same_device
from .errors import describe


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    return int(value)


class Layer:
    """Base class of every layer.

    Attributes
    ----------
    params : dict of str -> array
        Trainable arrays; empty for parameter-free layers.
    grads : dict of str -> array
        Gradients of the last backward pass, same keys and shapes as ``params``.
    backend : Backend or None
        Set by :meth:`build`.
    """

    in_features: int | None = None
    out_features: int | None = None
    #: What forward keeps for backward; :meth:`forget` drops it.
    _cached: tuple = ()

    def __init__(self, name: str | None = None):
        self.name = name
        self.params: dict = {}
        self.grads: dict = {}
        self.backend = None
        self._owner = None  # weak reference to the Sequential this layer belongs to

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe_args()})"

    def _describe_args(self) -> str:
        return ""

    @property
    def label(self) -> str:
        """How errors refer to this layer."""
        return f"layer {self.name!r} ({self!r})" if self.name else f"layer {self!r}"

    def build(self, backend) -> Layer:
        """Allocate parameters on ``backend`` (drawing from its generator). Returns self."""
        self.backend = backend
        return self

    def to(self, backend) -> Layer:
        """Move parameters to ``backend`` (through the host when devices differ)."""
        old = self.backend
        cross = old is not None and not same_device(backend, old)
        for store in (self.params, self.grads):
            for key, value in store.items():
                store[key] = backend.asarray(host_array(value) if cross else value,
                                             dtype=backend.dtype)
        self.backend = backend
        return self

    def clone(self, backend=None) -> Layer:
        """An independent copy (parameters copied) on ``backend`` (default: the same)."""
        new = copy.copy(self)
        new._owner = None
        new.params, new.grads = dict(self.params), dict(self.grads)
        new.to(backend or self.backend)
        xp = new.backend.xp
        for store in (new.params, new.grads):
            for key, value in store.items():
                store[key] = xp.asarray(value, copy=True)
        return new

    def forget(self) -> None:
        """Drop what the last forward kept for backward (``fit``, ``evaluate`` and
        ``predict`` call it when they return, so no batch of their data stays alive)."""
        for attr in self._cached:
            setattr(self, attr, None)

    def forward(self, x, training: bool = False):
        """Output of the layer for input ``x``."""
        raise NotImplementedError

    def backward(self, grad_out):
        """Fill ``grads`` and return the gradient w.r.t. the last forward's input."""
        raise NotImplementedError

    def output_shape(self, in_features: int | None) -> int | None:
        """Feature count this layer produces from ``in_features``."""
        return in_features

    def regularization_loss(self):
        """Penalty this layer adds to the loss (``None`` when it adds none)."""
        return None

    def param_shapes(self) -> dict:
        """Shapes of the parameters :meth:`build` creates (for model files)."""
        return {}

    def config(self) -> dict:
        """Constructor arguments, for architectures and model files."""
        return {}

    def _require_built(self):
        if self.backend is None:
            raise RuntimeError(f"{self.label} is not built: call layer.build(backend) or put "
                               "it in a Sequential")

    def _require_forward(self, attr: str):
        if getattr(self, attr, None) is None:
            raise RuntimeError(f"{self.label}: backward called before forward")


class Dense(Layer):
    """Fully connected layer ``y = f(x @ W + b)``.

    Parameters
    ----------
    in_features, out_features : int
    activation : str, optional
        Any name of :data:`gpunn.activations.ACTIVATIONS`; ``None`` is identity.
    init : str, optional
        ``"he"``, ``"xavier"``/``"glorot"``, ``"xavier_normal"``, ``"small"`` or
        ``"zeros"``; default He before ReLU-like activations, Xavier otherwise.
    kernel_l2 : float, default 0
        Adds ``kernel_l2 * sum(W**2)`` to the loss (biases are not penalised).
    activation_params : dict, optional
        Hyper-parameters of the activation, e.g. ``{"alpha": 0.2}`` for leaky ReLU.
    name : str, optional

    Notes
    -----
    Shapes: ``x (batch, in_features)``, ``W (in_features, out_features)``,
    ``b (out_features,)``, output ``(batch, out_features)``.
    """

    _cached = ("_x", "_z", "_y")

    def __init__(self, in_features: int, out_features: int, activation: str | None = None,
                 init: str | None = None, kernel_l2: float = 0.0,
                 activation_params: dict | None = None, name: str | None = None):
        super().__init__(name)
        self.in_features = _positive_int(in_features, "Dense in_features")
        self.out_features = _positive_int(out_features, "Dense out_features")
        self.activation_fn, self.activation_params = _act.get(activation,
                                                              **(activation_params or {}))
        self.activation = self.activation_fn.name
        self.init = (init or _init.default_for(self.activation))
        _init.get(self.init)
        if isinstance(kernel_l2, bool) or not isinstance(kernel_l2, numbers.Real) or \
                not 0 <= kernel_l2 < float("inf"):
            raise ValueError(f"Dense kernel_l2: expected a number >= 0, got {kernel_l2!r}")
        self.kernel_l2 = float(kernel_l2)
        self._x = self._z = self._y = None

    def _describe_args(self) -> str:
        act = "" if self.activation == "identity" else f", activation={self.activation!r}"
        return f"{self.in_features}, {self.out_features}{act}"

    def build(self, backend) -> Dense:
        self.backend = backend
        W = _init.get(self.init)(backend, self.in_features, self.out_features)
        self.params = {"W": backend.asarray(W), "b": backend.zeros((self.out_features,))}
        self.grads = {k: backend.zeros(v.shape) for k, v in self.params.items()}
        return self

    def output_shape(self, in_features):
        return self.out_features

    def param_shapes(self) -> dict:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def check_input(self, x) -> None:
        """Raise a ``ValueError`` naming this layer unless ``x`` is ``(batch, in_features)``."""
        shape = getattr(x, "shape", ())
        if len(shape) != 2 or shape[1] != self.in_features:
            raise ValueError(f"{self.label}: expected input of shape (batch, "
                             f"{self.in_features}), got {describe(x)}")

    def forward(self, x, training: bool = False, logits: bool = False,
                add_bias: bool = True):
        """Compute the layer output.

        Parameters
        ----------
        x : (batch, in_features)
        training : bool
            Unused by Dense (kept for the common contract).
        logits : bool
            Return the pre-activation ``z`` and skip the activation: a loss takes it from
            there (``loss.forward_logits``, see ``Loss.logits_of``).
        add_bias : bool
            False returns ``x @ W`` only, with ``logits``: a fused loss adds the bias
            (see :class:`gpunn.backend.base.StepFusion`).

        Returns
        -------
        (batch, out_features)
        """
        if self.backend is None:
            self._require_built()
        self.check_input(x)
        self._x = x
        if logits and not add_bias:
            self._z = self._y = x @ self.params["W"]
            return self._y
        act = _act.IDENTITY if logits else self.activation_fn
        self._z, self._y = self.backend.bias_activation(x, self.params["W"], self.params["b"],
                                                        act, self.activation_params)
        return self._y

    def backward(self, grad_out, need_input_grad: bool = True, logits: bool = False,
                 bias_done: bool = False):
        """Backpropagate ``grad_out (batch, out_features)`` through activation and affine map.

        Parameters
        ----------
        grad_out : (batch, out_features)
            ``dL/dy``; with ``logits=True``, ``dL/dz`` (the activation was in the loss).
        need_input_grad : bool
            Skip the input gradient (one matmul) for the first layer.
        logits : bool
            As in :meth:`forward`.
        bias_done : bool
            ``grads["b"]`` already holds the bias gradient (a fused loss wrote it).

        Returns
        -------
        (batch, in_features) or None when ``need_input_grad`` is False.
        """
        self._require_forward("_z")
        act = None if self.activation == "identity" or logits else self.activation_fn
        gW, gb, gx = self.backend.dense_backward(
            self._x, self.params["W"], self._z, self._y, grad_out, act,
            self.activation_params, need_input_grad, out=(self.grads["W"], self.grads["b"]),
            bias_done=bias_done)
        if self.kernel_l2:
            gW += (2.0 * self.kernel_l2) * self.params["W"]
        self.grads["W"], self.grads["b"] = gW, gb
        return gx

    def regularization_loss(self):
        if not self.kernel_l2:
            return None
        W = self.params["W"]
        return self.kernel_l2 * self.backend.xp.sum(W * W)

    def config(self) -> dict:
        cfg = {"in_features": self.in_features, "out_features": self.out_features,
               "activation": self.activation, "init": self.init}
        if self.kernel_l2:
            cfg["kernel_l2"] = self.kernel_l2
        if self.activation_params:
            cfg["activation_params"] = dict(self.activation_params)
        return cfg


class Dropout(Layer):
    """Inverted dropout: zero each unit with probability ``p`` while training.

    Kept units are scaled by ``1 / (1 - p)`` so nothing changes at inference time.

    Parameters
    ----------
    p : float in [0, 1)
    """

    _cached = ("_mask",)

    def __init__(self, p: float = 0.5, name: str | None = None):
        super().__init__(name)
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout p: expected a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self._mask = None

    def _describe_args(self) -> str:
        return f"p={self.p}"

    def forward(self, x, training: bool = False):
        """``x (batch, features)`` -> same shape."""
        self._require_built()
        if not training or self.p == 0.0:
            self._mask = None
            return x
        keep = 1.0 - self.p
        self._mask = self.backend.random.bernoulli(tuple(x.shape), keep) * (1.0 / keep)
        return x * self._mask

    def backward(self, grad_out):
        return grad_out if self._mask is None else grad_out * self._mask

    def config(self) -> dict:
        return {"p": self.p}


class ActivationLayer(Layer):
    """A standalone activation, e.g. ``ActivationLayer("leaky_relu", alpha=0.2)``.

    Parameters
    ----------
    activation : str
    **params
        Hyper-parameters of the activation.
    """

    _cached = ("_z", "_y")

    def __init__(self, activation: str, name: str | None = None, **params):
        super().__init__(name)
        self.activation_fn, self.activation_params = _act.get(activation, **params)
        self.activation = self.activation_fn.name
        self._z = self._y = None

    def _describe_args(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.activation_params.items())
        return f"{self.activation!r}{extra}"

    def forward(self, x, training: bool = False):
        """``x (batch, features)`` -> same shape."""
        self._require_built()
        self._z = x
        self._y = self.activation_fn.forward(self.backend.xp, x, **self.activation_params)
        return self._y

    def backward(self, grad_out):
        self._require_forward("_z")
        return self.backend.activation_backward(self.activation_fn, self._z, self._y, grad_out,
                                                self.activation_params)

    def config(self) -> dict:
        return {"activation": self.activation, **self.activation_params}


def _activation_class(class_name: str, activation: str) -> type:
    def __init__(self, name: str | None = None, **params):
        ActivationLayer.__init__(self, activation, name=name, **params)

    doc = f"The ``{activation}`` activation as a layer (see :mod:`gpunn.activations`)."
    return type(class_name, (ActivationLayer,), {"__init__": __init__, "__doc__": doc})


Identity = _activation_class("Identity", "identity")
Linear = _activation_class("Linear", "linear")
Sigmoid = _activation_class("Sigmoid", "sigmoid")
Tanh = _activation_class("Tanh", "tanh")
BinaryStep = _activation_class("BinaryStep", "binary_step")
ReLU = _activation_class("ReLU", "relu")
LeakyReLU = _activation_class("LeakyReLU", "leaky_relu")
Softmax = _activation_class("Softmax", "softmax")
ELU = _activation_class("ELU", "elu")
GELU = _activation_class("GELU", "gelu")
Softplus = _activation_class("Softplus", "softplus")

LAYERS = {"Dense": Dense, "Dropout": Dropout, "ActivationLayer": ActivationLayer}
