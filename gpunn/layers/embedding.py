"""``Embedding``: a trainable table of vectors looked up by integer index."""

from __future__ import annotations

import numpy as np

from ..backend.ops import host_array
from ..errors import describe
from .base import ANY_SIZE, Layer, positive_int, register, show_shape


@register
class Embedding(Layer):
    """Row ``i`` of a trainable table ``W`` for each index ``i``.

    Parameters
    ----------
    num_embeddings : int
        Rows of the table: indices run from 0 to ``num_embeddings - 1``.
    embedding_dim : int
        Length of each vector.
    name : str, optional

    Attributes
    ----------
    params : ``W (num_embeddings, embedding_dim)``, drawn from N(0, 1) as PyTorch does

    Raises
    ------
    ValueError
        When run: an index outside ``[0, num_embeddings)``, or a non-integer (NaN
        included), naming the layer and the first offending entry, before anything is kept.
    TypeError
        Indices that are not numbers, or floats too narrow to hold every index exactly.

    Notes
    -----
    Shapes: ``x (batch,)`` -> ``(batch, embedding_dim)``; ``x (batch, k)`` -> ``(batch, k,
    embedding_dim)``. Through ``fit``, ``evaluate`` and ``predict`` inputs arrive as
    ``(batch, k)`` floats (the input pipeline casts to the model's dtype): floats holding
    integers exactly are taken as indices, so an Embedding can be a model's first layer.
    A float32 model holds indices exactly up to 2**24 rows (float64: 2**53). The gradient
    of ``W`` is a scatter-add of the output gradient's rows (``backend.scatter_add_rows``);
    the indices have none (zeros are returned where one is asked for).

    Examples
    --------
    >>> import gpunn as gn
    >>> net = gn.Sequential([gn.Embedding(100, 8), gn.Flatten(),
    ...                      gn.Dense(3 * 8, 2, activation="softmax")], device="cpu")
    >>> net.predict([[4, 2, 99]]).shape
    (1, 2)
    """

    _cached = ("_index", "_x_shape")
    #: The model's first layer skips the (meaningless) input gradient.
    skips_input_grad = True

    def __init__(self, num_embeddings: int, embedding_dim: int, name: str | None = None):
        super().__init__(name)
        self.num_embeddings = positive_int(num_embeddings, "Embedding num_embeddings")
        self.embedding_dim = positive_int(embedding_dim, "Embedding embedding_dim")
        self._index = self._x_shape = None

    def _describe_args(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"

    def param_shapes(self) -> dict:
        return {"W": (self.num_embeddings, self.embedding_dim)}

    def allocate(self, backend) -> None:
        self.add_param("W", backend.random.normal(self.param_shapes()["W"]))

    def input_shape(self) -> tuple:
        return (ANY_SIZE,)  # (batch, k) indices through a model, any k

    def output_shape(self, input_shape):
        if input_shape is None:
            return (ANY_SIZE, self.embedding_dim)
        if len(input_shape) > 1:
            raise ValueError(f"{self.label}: expects indices of shape (batch,) or (batch, k), "
                             f"the layer before it gives {show_shape(input_shape)}")
        return tuple(input_shape) + (self.embedding_dim,)

    def _indices(self, x):
        """``x`` as int64 indices, checked (see the class notes); a ValueError naming the
        layer and the first bad entry otherwise."""
        be = self.backend
        xp = be.xp
        if not be.owns(x):
            x = be.asarray(x)
        shape = tuple(x.shape)
        if len(shape) not in (1, 2):
            raise ValueError(f"{self.label}: expected indices of shape (batch,) or (batch, "
                             f"k), got {describe(x)}")
        integral = xp.isdtype(x.dtype, "integral")
        if not integral and not be.is_floating(x.dtype):
            raise TypeError(f"{self.label}: expected integer indices (or floats holding "
                            f"integers), got {describe(x)}")
        n = self.num_embeddings
        if not integral and n > 2 / float(xp.finfo(x.dtype).eps):
            raise TypeError(f"{self.label}: {x.dtype} holds integers exactly only up to "
                            f"{int(2 / float(xp.finfo(x.dtype).eps))}, fewer than the "
                            f"{n} rows; pass integer indices to forward, or use a float64 "
                            "model")
        inside = (x >= 0) & (x < n)
        if not integral:
            inside = inside & (xp.floor(x) == x)  # NaN fails every comparison too
        # One read per batch: a gather outside the table would wrap around (NumPy) or
        # read other memory (CUDA) without a word.
        if not bool(xp.all(inside)):
            host, ok = host_array(x), host_array(inside)
            where = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise ValueError(f"{self.label}: expected integer indices in [0, {n}), got "
                             f"{host[where].item()!r} at position {where} of {describe(x)}")
        return x if integral and x.dtype == xp.int64 else xp.astype(x, xp.int64)

    def forward(self, x, training: bool = False):
        """``x (batch,)`` or ``(batch, k)`` indices -> ``(batch, [k,] embedding_dim)``."""
        self._require_built()
        index = self._indices(x)
        xp = self.backend.xp
        flat = xp.reshape(index, (-1,))
        self._index, self._x_shape = flat, tuple(index.shape)
        rows = xp.take(self.params["W"], flat, axis=0)
        return xp.reshape(rows, self._x_shape + (self.embedding_dim,))

    def backward(self, grad_out, need_input_grad: bool = True):
        """Scatter-add ``dL/dy`` into ``grads["W"]`` (repeated indices summed); returns
        zeros of the indices' shape (None when ``need_input_grad`` is False)."""
        self._require_forward("_index")
        be = self.backend
        xp = be.xp
        g = self.grads["W"]
        g[...] = 0
        values = xp.reshape(grad_out, (-1, self.embedding_dim))
        self.grads["W"] = be.scatter_add_rows(g, self._index, values)
        return be.zeros(self._x_shape) if need_input_grad else None

    def to_onnx(self, graph, x: str, path: str) -> str:
        """``Gather`` of the table's rows at the (float) input cast to int64."""
        index = graph.node("Cast", [x], to=graph.onnx.TensorProto.INT64)
        return graph.node("Gather", [graph.param(f"{path}.W", self.params["W"]), index],
                          axis=0)

    def get_config(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}
