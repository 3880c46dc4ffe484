"""A user's layer in one file: layer normalisation over the features (Ba et al. 2016).

Everything gpunn needs is here: its parameters (declared from the config), forward and
backward, its shape rule, its config, its ONNX nodes and its registration.
"""

from __future__ import annotations

import numpy as np

import gpunn as gn


# gpunn has a LayerNorm of its own: a user's layer registers under a name of its own.
@gn.register_layer(name="FeatureLayerNorm")
class LayerNorm(gn.Layer):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` over each row's features.

    Parameters
    ----------
    features : int
    eps : float, default 1e-5

    Notes
    -----
    Shapes: ``x (batch, features)`` -> same.
    """

    _cached = ("_xhat", "_inv")

    def __init__(self, features: int, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        self.features, self.eps = int(features), float(eps)
        self._xhat = self._inv = None

    def param_shapes(self) -> dict:
        return {"gamma": (self.features,), "beta": (self.features,)}

    def allocate(self, backend) -> None:
        self.add_param("gamma", np.ones(self.features))
        self.add_param("beta", np.zeros(self.features))

    def input_shape(self):
        return (self.features,)

    def output_shape(self, input_shape):
        return (self.features,)

    def forward(self, x, training=False):
        xp = self.backend.xp
        centred = x - xp.mean(x, axis=-1, keepdims=True)
        var = xp.mean(centred * centred, axis=-1, keepdims=True)
        self._inv = 1.0 / xp.sqrt(var + self.eps)
        self._xhat = centred * self._inv
        return self._xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, grad_out):
        xp = self.backend.xp
        xhat, inv = self._xhat, self._inv
        self.grads["gamma"] = xp.sum(grad_out * xhat, axis=0)
        self.grads["beta"] = xp.sum(grad_out, axis=0)
        g = grad_out * self.params["gamma"]
        return inv * (g - xp.mean(g, axis=-1, keepdims=True)
                      - xhat * xp.mean(g * xhat, axis=-1, keepdims=True))

    def get_config(self) -> dict:
        return {"features": self.features, "eps": self.eps}

    def to_onnx(self, graph, x, path):
        return graph.node("LayerNormalization", [x, graph.param(f"{path}.gamma",
                                                                self.params["gamma"]),
                                                 graph.param(f"{path}.beta",
                                                             self.params["beta"])],
                          axis=-1, epsilon=self.eps)
