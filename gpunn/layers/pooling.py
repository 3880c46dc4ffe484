"""Pooling: ``MaxPool1D``/``MaxPool2D`` and ``AvgPool1D``/``AvgPool2D`` over windows of
each channel, and ``GlobalAvgPool`` over all spatial axes.

The layers call the backend's pooling operations (``backend.pool_forward`` and
``backend.pool_backward``): generically, windows cut by the patch operation convolutions
use (``backend.im2col``) with each channel as its own sample, one reduction over the window
axis, and the window gradients put back with ``backend.col2im``; on CUDA, one kernel each
way.
"""

from __future__ import annotations

from ..errors import describe
from .base import ANY_SIZE, Layer, register, show_shape
from .conv import as_tuple, window_output


class _Pool(Layer):
    """A window reduction over ``ndim`` spatial axes, channels kept apart."""

    ndim = 0
    axes = ""
    op = ""  # "max" or "avg"
    onnx_op = ""
    _cached = ("_x_shape", "_arg", "_out")

    def __init__(self, kernel_size, stride=None, name: str | None = None):
        super().__init__(name)
        kind = type(self).__name__
        self.kernel_size = as_tuple(kernel_size, self.ndim, f"{kind} kernel_size")
        self.stride = self.kernel_size if stride is None else \
            as_tuple(stride, self.ndim, f"{kind} stride")
        self._x_shape = self._arg = self._out = None

    def _describe_args(self) -> str:
        k = self.kernel_size[0] if self.ndim == 1 else self.kernel_size
        s = self.stride[0] if self.ndim == 1 else self.stride
        return f"{k}" + ("" if self.stride == self.kernel_size else f", stride={s}")

    def input_shape(self) -> tuple:
        return (ANY_SIZE,) * (1 + self.ndim)  # any channels: the rank is what is fixed

    def output_shape(self, input_shape):
        if input_shape is None:
            return (ANY_SIZE,) * (1 + self.ndim)
        if len(input_shape) != 1 + self.ndim:
            raise ValueError(f"{self.label}: expects inputs of shape (batch, channels, "
                             f"{self.axes}), the layer before it gives "
                             f"{show_shape(input_shape)}")
        return (input_shape[0],) + window_output(
            self, tuple(input_shape[1:]), self.kernel_size, self.stride, (0,) * self.ndim,
            f"an input of shape {show_shape(input_shape)}")

    def forward(self, x, training: bool = False):
        """``x (batch, channels, *spatial)`` -> ``(batch, channels, *out)`` with ``out =
        (spatial - kernel_size) // stride + 1`` per axis."""
        self._require_built()
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 2 + self.ndim:
            raise ValueError(f"{self.label}: expected input of shape (batch, channels, "
                             f"{self.axes}), got {describe(x)}")
        out = window_output(self, shape[2:], self.kernel_size, self.stride,
                            (0,) * self.ndim, f"an input of shape {shape}")
        y, self._arg = self.backend.pool_forward(x, self.op, self.kernel_size, self.stride)
        self._x_shape, self._out = shape, out
        return y

    def backward(self, grad_out):
        """``dL/dy (batch, channels, *out)`` -> ``dL/dx (batch, channels, *spatial)``; the
        maximum of each window takes its gradient (max), or the window shares it (avg)."""
        self._require_forward("_out")
        return self.backend.pool_backward(grad_out, self._arg, self.op, self._x_shape,
                                          self.kernel_size, self.stride)

    def to_onnx(self, graph, x: str, path: str) -> str:
        return graph.node(self.onnx_op, [x], kernel_shape=list(self.kernel_size),
                          strides=list(self.stride))

    def get_config(self) -> dict:
        one = self.ndim == 1
        return {"kernel_size": self.kernel_size[0] if one else list(self.kernel_size),
                "stride": self.stride[0] if one else list(self.stride)}


_PARAMETERS = """
    Parameters
    ----------
    kernel_size : int{pair}
    stride : int{pair}, optional
        Default ``kernel_size`` (windows side by side, no overlap).
    name : str, optional

    Raises
    ------
    ValueError
        A bad setting (naming it); when built or run, an input smaller than the window
        (naming the layer).
    """


@register
class MaxPool1D(_Pool):
    __doc__ = """The maximum of each window along the length (PyTorch's ``MaxPool1d``).
    """ + _PARAMETERS.format(pair="") + """
    Notes
    -----
    Shapes: ``x (batch, channels, length)`` -> ``(batch, channels, (length - kernel_size)
    // stride + 1)``. Where a window holds its maximum twice, the first takes the gradient.
    """

    ndim, axes, op, onnx_op = 1, "length", "max", "MaxPool"


@register
class MaxPool2D(_Pool):
    __doc__ = """The maximum of each window (PyTorch's ``MaxPool2d``).
    """ + _PARAMETERS.format(pair=" or (int, int)") + """
    Notes
    -----
    Shapes: ``x (batch, channels, height, width)`` -> ``(batch, channels, out_height,
    out_width)``, each ``(size - kernel) // stride + 1``. Where a window holds its maximum
    twice, the first (row-major) takes the gradient.
    """

    ndim, axes, op, onnx_op = 2, "height, width", "max", "MaxPool"


@register
class AvgPool1D(_Pool):
    __doc__ = """The mean of each window along the length (PyTorch's ``AvgPool1d``).
    """ + _PARAMETERS.format(pair="") + """
    Notes
    -----
    Shapes: ``x (batch, channels, length)`` -> ``(batch, channels, (length - kernel_size)
    // stride + 1)``.
    """

    ndim, axes, op, onnx_op = 1, "length", "avg", "AveragePool"


@register
class AvgPool2D(_Pool):
    __doc__ = """The mean of each window (PyTorch's ``AvgPool2d``).
    """ + _PARAMETERS.format(pair=" or (int, int)") + """
    Notes
    -----
    Shapes: ``x (batch, channels, height, width)`` -> ``(batch, channels, out_height,
    out_width)``, each ``(size - kernel) // stride + 1``.
    """

    ndim, axes, op, onnx_op = 2, "height, width", "avg", "AveragePool"


@register
class GlobalAvgPool(Layer):
    """The mean of each channel over all spatial axes: ``(batch, channels, *spatial)`` ->
    ``(batch, channels)``.

    Parameters
    ----------
    name : str, optional

    Notes
    -----
    Any number of spatial axes (one or more); typically before the classifier of a
    convolutional network whose input size may vary.
    """

    _cached = ("_x_shape",)

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._x_shape = None

    def output_shape(self, input_shape):
        if input_shape is None:
            return (ANY_SIZE,)
        if len(input_shape) < 2:
            raise ValueError(f"{self.label}: expects inputs of shape (batch, channels, "
                             f"*spatial) with at least one spatial axis, the layer before "
                             f"it gives {show_shape(input_shape)}")
        return (input_shape[0],)

    def forward(self, x, training: bool = False):
        """``x (batch, channels, *spatial)`` -> ``(batch, channels)``."""
        self._require_built()
        if x.ndim < 3:
            raise ValueError(f"{self.label}: expected input of shape (batch, channels, "
                             f"*spatial) with at least one spatial axis, got {describe(x)}")
        self._x_shape = tuple(x.shape)
        return self.backend.xp.mean(x, axis=tuple(range(2, x.ndim)))

    def backward(self, grad_out):
        self._require_forward("_x_shape")
        xp, shape = self.backend.xp, self._x_shape
        size = 1
        for d in shape[2:]:
            size *= d
        g = xp.reshape(grad_out / size, shape[:2] + (1,) * (len(shape) - 2))
        return xp.broadcast_to(g, shape)

    def to_onnx(self, graph, x: str, path: str) -> str:
        return graph.node("Flatten", [graph.node("GlobalAveragePool", [x])], axis=1)
