"""Activations as layers: ``ActivationLayer`` and one class per activation."""

from __future__ import annotations

from .. import activations as _act
from .base import Layer, register


@register
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

    def to_onnx(self, graph, x: str, path: str) -> str:
        return graph.activation(self, x)

    def get_config(self) -> dict:
        return {"activation": self.activation, **self.activation_params}


def _activation_class(class_name: str, activation: str) -> type:
    def __init__(self, name: str | None = None, **params):
        ActivationLayer.__init__(self, activation, name=name, **params)

    doc = f"The ``{activation}`` activation as a layer (see :mod:`gpunn.activations`)."
    # Files store these as the ActivationLayer they configure.
    return type(class_name, (ActivationLayer,), {"__init__": __init__, "__doc__": doc,
                                                 "_serializes_as": "ActivationLayer",
                                                 "from_config": _from_base_config,
                                                 "_activation_name": activation,
                                                 "__module__": __name__})


@classmethod
def _from_base_config(cls, config: dict):
    config = dict(config)
    if config.get("activation") != cls._activation_name:
        return ActivationLayer(**config)
    del config["activation"]
    return cls(**config)


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

