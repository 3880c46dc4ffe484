"""``Dense``: the fully connected layer ``y = f(x @ W + b)``."""

from __future__ import annotations

import numbers

from .. import activations as _act
from .. import init as _init
from ..errors import describe
from .base import Layer, positive_int, register

#: Largest ``kernel_l2`` a layer accepts.
MAX_PENALTY = 1e6


@register
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
    kernel_l2 : float in [0, 1e6], default 0
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
    #: backward(grad, need_input_grad=False) skips the input gradient.
    skips_input_grad = True

    def __init__(self, in_features: int, out_features: int, activation: str | None = None,
                 init: str | None = None, kernel_l2: float = 0.0,
                 activation_params: dict | None = None, name: str | None = None):
        super().__init__(name)
        self.in_features = positive_int(in_features, "Dense in_features")
        self.out_features = positive_int(out_features, "Dense out_features")
        self.activation_fn, self.activation_params = _act.get(activation,
                                                              **(activation_params or {}))
        self.activation = self.activation_fn.name
        self.init = (init or _init.default_for(self.activation))
        _init.get(self.init)
        # Bounded as activation parameters are: a larger penalty zeroes the weights in one
        # step or overflows the loss, so it can only be a mistake (or a crafted file).
        if isinstance(kernel_l2, bool) or not isinstance(kernel_l2, numbers.Real) or \
                not 0 <= kernel_l2 <= MAX_PENALTY:
            raise ValueError(f"Dense kernel_l2: expected a number in [0, {MAX_PENALTY:g}], "
                             f"got {kernel_l2!r}")
        self.kernel_l2 = float(kernel_l2)
        self._x = self._z = self._y = None
        self._head = False  # the last forward stopped before the activation

    def _describe_args(self) -> str:
        act = "" if self.activation == "identity" else f", activation={self.activation!r}"
        return f"{self.in_features}, {self.out_features}{act}"

    def allocate(self, backend) -> None:
        self.add_param("W", _init.get(self.init)(backend, self.in_features, self.out_features))
        self.add_param("b", backend.zeros((self.out_features,)))

    def input_shape(self) -> tuple:
        return (self.in_features,)

    def output_shape(self, input_shape):
        if input_shape is not None and tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self.label}: expects inputs of shape (batch, "
                             f"{self.in_features}), the layer before it gives (batch, "
                             f"{', '.join(map(str, input_shape))})")
        return (self.out_features,)

    def param_shapes(self) -> dict:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def output_layer(self):
        return self

    def check_input(self, x) -> None:
        """Raise a ``ValueError`` naming this layer unless ``x`` is ``(batch, in_features)``."""
        shape = getattr(x, "shape", ())
        if len(shape) != 2 or shape[1] != self.in_features:
            raise ValueError(f"{self.label}: expected input of shape (batch, "
                             f"{self.in_features}), got {describe(x)}")

    def forward(self, x, training: bool = False):
        """``x (batch, in_features)`` -> ``(batch, out_features)`` (``training`` is
        unused: Dense behaves the same in both modes)."""
        # forward_logits's work, written out: one call fewer per layer and step.
        if self.backend is None:
            self._require_built()
        self.check_input(x)
        self._x, self._head = x, False
        self._z, self._y = self.backend.bias_activation(x, self.params["W"], self.params["b"],
                                                        self.activation_fn,
                                                        self.activation_params)
        return self._y

    def forward_logits(self, x, training: bool = False, add_bias: bool = True,
                       activate: bool = False):
        """The pre-activation ``z = x @ W + b`` that a paired loss takes instead of the
        output (see ``Loss.logits_of``); without ``add_bias`` only ``x @ W``, for a fused
        loss that adds the bias itself (see :class:`gpunn.training.head.FusedHead`).

        Parameters
        ----------
        x : (batch, in_features)

        Returns
        -------
        (batch, out_features)
        """
        if self.backend is None:
            self._require_built()
        self.check_input(x)
        self._x = x
        self._head = not activate
        if not add_bias:
            self._z = self._y = x @ self.params["W"]
            return self._y
        act = self.activation_fn if activate else _act.IDENTITY
        self._z, self._y = self.backend.bias_activation(x, self.params["W"], self.params["b"],
                                                        act, self.activation_params)
        return self._y

    def backward(self, grad_z, need_input_grad: bool = True, bias_done: bool = False):
        """Backpropagate through the activation and the affine map; fills ``grads``.

        Parameters
        ----------
        grad_z : (batch, out_features)
            ``dL/dy`` after :meth:`forward`; ``dL/dz`` after :meth:`forward_logits`
            (the loss applied the activation).
        need_input_grad : bool
            False skips the input gradient (the first layer of a model: one matmul).
        bias_done : bool
            ``grads["b"]`` already holds the bias gradient (a fused loss wrote it).

        Returns
        -------
        (batch, in_features), or None when ``need_input_grad`` is False.
        """
        self._require_forward("_z")
        act = None if self.activation == "identity" or self._head else self.activation_fn
        gW, gb, gx = self.backend.dense_backward(
            self._x, self.params["W"], self._z, self._y, grad_z, act,
            self.activation_params, need_input_grad, out=(self.grads["W"], self.grads["b"]),
            bias_done=bias_done)
        if self.kernel_l2:
            gW += (2.0 * self.kernel_l2) * self.params["W"]
        self.grads["W"], self.grads["b"] = gW, gb
        return gx

    #: Backward from ``dL/dz`` after :meth:`forward_logits`: the same maths (the forward
    #: pass recorded whether the activation was applied).
    backward_logits = backward

    def to_onnx(self, graph, x: str, path: str) -> str:
        """``Gemm`` (``W`` is already ``(in, out)``), then the activation."""
        z = graph.node("Gemm", [x, graph.param(f"{path}.W", self.params["W"]),
                                graph.param(f"{path}.b", self.params["b"])])
        return graph.activation(self, z)

    def penalty(self):
        if not self.kernel_l2:
            return None
        W = self.params["W"]
        return self.kernel_l2 * self.backend.xp.sum(W * W)

    def get_config(self) -> dict:
        cfg = {"in_features": self.in_features, "out_features": self.out_features,
               "activation": self.activation, "init": self.init}
        if self.kernel_l2:
            cfg["kernel_l2"] = self.kernel_l2
        if self.activation_params:
            cfg["activation_params"] = dict(self.activation_params)
        return cfg
