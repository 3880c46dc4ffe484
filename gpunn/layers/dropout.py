"""``Dropout``: inverted dropout."""

from __future__ import annotations

import numbers

from .base import Layer, register


@register
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

    def to_onnx(self, graph, x: str, path: str) -> str:
        return x  # nothing at inference

    def get_config(self) -> dict:
        return {"p": self.p}
