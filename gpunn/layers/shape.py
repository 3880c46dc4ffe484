"""Layers that only rearrange values: ``Flatten`` and ``Reshape``.

Both keep the batch axis and change the per-sample shape; their backward reshapes the
gradient back to the input's shape.
"""

from __future__ import annotations

import numbers

from ..errors import describe
from .base import ANY_SIZE, Layer, is_any_size, known_size, register, show_shape


@register
class Flatten(Layer):
    """Each sample as one vector: ``(batch, *shape)`` -> ``(batch, prod(shape))``.

    Typically between convolutions and a ``Dense`` layer.

    Parameters
    ----------
    name : str, optional

    Notes
    -----
    Shapes: ``x (batch, d1, d2, ...)`` -> ``(batch, d1 * d2 * ...)``. The output width is
    known once the input shape is (it is free while a convolution's height and width are).
    """

    _cached = ("_shape",)

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._shape = None

    def output_shape(self, input_shape):
        size = known_size(input_shape)
        return (ANY_SIZE,) if size is None else (size,)

    def forward(self, x, training: bool = False):
        """``x (batch, *shape)`` -> ``(batch, prod(shape))``."""
        self._require_built()
        if x.ndim < 1:
            raise ValueError(f"{self.label}: expected an input with a batch axis, got "
                             f"{describe(x)}")
        self._shape = tuple(x.shape)
        return self.backend.xp.reshape(x, (self._shape[0], -1))

    def backward(self, grad_out):
        self._require_forward("_shape")
        return self.backend.xp.reshape(grad_out, self._shape)

    def to_onnx(self, graph, x: str, path: str) -> str:
        return graph.node("Flatten", [x], axis=1)


@register
class Reshape(Layer):
    """Each sample reshaped to ``shape``: ``(batch, *in_shape)`` -> ``(batch, *shape)``.

    Parameters
    ----------
    shape : int or tuple of int
        The per-sample output shape, e.g. ``(1, 40)`` to give 40 features one channel for a
        ``Conv1D``. One entry may be ``-1``: it is inferred from the input's size.
    name : str, optional

    Raises
    ------
    ValueError
        ``shape`` is not a tuple of positive ints (and at most one -1); when the model is
        built or run, the input's size per sample does not match ``shape``'s.

    Notes
    -----
    Shapes: ``x (batch, *in_shape)`` -> ``(batch, *shape)`` with ``prod(in_shape) ==
    prod(shape)``; values keep their row-major (C) order, as NumPy's and PyTorch's reshape.
    """

    _cached = ("_shape",)

    def __init__(self, shape, name: str | None = None):
        super().__init__(name)
        self.shape = _target_shape(shape)
        self._shape = None

    def _describe_args(self) -> str:
        return repr(self.shape)

    def _resolve(self, size: int, where: str) -> tuple:
        """The output shape for ``size`` values per sample (the -1 filled in)."""
        fixed = 1
        for d in self.shape:
            fixed *= d if d != -1 else 1
        if -1 in self.shape:
            if size % fixed:
                raise ValueError(f"{self.label}: cannot reshape {where} ({size} values per "
                                 f"sample) to {self.shape}: {size} is not a multiple of "
                                 f"{fixed}")
            return tuple(size // fixed if d == -1 else d for d in self.shape)
        if size != fixed:
            raise ValueError(f"{self.label}: cannot reshape {where} ({size} values per "
                             f"sample) to {self.shape} ({fixed} values per sample)")
        return self.shape

    def output_shape(self, input_shape):
        size = known_size(input_shape)
        if size is None:
            return tuple(ANY_SIZE if d == -1 else d for d in self.shape)
        return self._resolve(size, f"inputs of shape {show_shape(input_shape)}")

    def forward(self, x, training: bool = False):
        """``x (batch, *in_shape)`` -> ``(batch, *shape)``."""
        self._require_built()
        if x.ndim < 1:
            raise ValueError(f"{self.label}: expected an input with a batch axis, got "
                             f"{describe(x)}")
        size = known_size(tuple(x.shape[1:]))
        out = self._resolve(size, f"an input of shape {tuple(x.shape)}")
        self._shape = tuple(x.shape)
        return self.backend.xp.reshape(x, (self._shape[0],) + out)

    def backward(self, grad_out):
        self._require_forward("_shape")
        return self.backend.xp.reshape(grad_out, self._shape)

    def to_onnx(self, graph, x: str, path: str) -> str:
        # 0 keeps the input's batch size (ONNX Reshape's "copy this dimension").
        return graph.node("Reshape", [x, graph.ints(f"{path}.shape", (0,) + self.shape)])

    def get_config(self) -> dict:
        return {"shape": list(self.shape)}


def _target_shape(shape) -> tuple:
    """``shape`` as a tuple of positive ints with at most one -1, or a ValueError."""
    items = (shape,) if isinstance(shape, numbers.Integral) else shape
    ok = isinstance(items, (tuple, list)) and len(items) > 0 and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and
        not is_any_size(d) and (d > 0 or d == -1) for d in items)
    if not ok or list(items).count(-1) > 1:
        raise ValueError(f"Reshape shape: expected a per-sample shape (a tuple of positive "
                         f"ints, one of them may be -1), got {describe(shape)}")
    return tuple(int(d) for d in items)
