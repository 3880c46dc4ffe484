"""A user's layer with a buffer, in one file: subtracts a running mean of its inputs.

The running mean (a float buffer) and the number of batches seen (an integer buffer) are
non-trainable state: saved, loaded, moved, cloned, rolled back and broadcast with the
parameters, never stepped by the optimiser. It has no ONNX form on purpose (the export
refuses it by name).
"""

from __future__ import annotations

import numpy as np

import gpunn as gn


@gn.register_layer
class RunningCenter(gn.Layer):
    """``x - running_mean`` where ``running_mean`` follows the training batches' means
    with ``momentum`` (PyTorch's convention); in inference the stored mean is used.

    Parameters
    ----------
    features : int
    momentum : float, default 0.1
    """

    def __init__(self, features: int, momentum: float = 0.1, name: str | None = None):
        super().__init__(name)
        self.features, self.momentum = int(features), float(momentum)

    def buffer_shapes(self) -> dict:
        return {"running_mean": (self.features,), "batches": ()}

    def allocate(self, backend) -> None:
        self.add_buffer("running_mean", np.zeros(self.features))
        self.add_buffer("batches", np.zeros((), dtype=np.int64))

    def input_shape(self):
        return (self.features,)

    def forward(self, x, training=False):
        xp = self.backend.xp
        mean = self.buffers["running_mean"]
        if training:
            batch_mean = xp.mean(x, axis=0)
            mean[...] = (1.0 - self.momentum) * mean + self.momentum * batch_mean
            self.buffers["batches"][...] = self.buffers["batches"] + 1
        return x - mean

    def backward(self, grad_out):
        return grad_out  # the running mean is a constant to the gradient

    def get_config(self) -> dict:
        return {"features": self.features, "momentum": self.momentum}
