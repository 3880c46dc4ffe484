"""Convolutions: ``Conv1D`` on ``(batch, channels, length)`` and ``Conv2D`` on ``(batch,
channels, height, width)``.

A convolution is a dense layer applied to every patch of its input. The layer checks its
input and calls the backend's ``conv_forward``/``conv_backward``: the generic version cuts
the patches (``backend.im2col``, one kernel on CuPy), maps them with one product per sample (``W
(out_channels, C*K) @ cols (C*K, L)``, channels-first) and adds the patch gradients back
(``backend.col2im``); NumPy's lays the patches out as rows and uses one GEMM for the whole
batch. Weights are ``(out_channels, in_channels, *kernel)``, as PyTorch and ONNX hold them.
"""

from __future__ import annotations

import numbers

from .. import activations as _act
from .. import init as _init
from ..errors import describe
from .base import ANY_SIZE, Layer, is_any_size, positive_int, register, show_shape


def as_tuple(value, n: int, what: str, minimum: int = 1) -> tuple:
    """An int or a sequence of ``n`` ints, each >= ``minimum``, as a tuple of ``n``; a
    ValueError naming ``what`` otherwise."""
    items = (value,) * n if isinstance(value, numbers.Integral) else value
    ok = isinstance(items, (tuple, list)) and len(items) == n and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum
        for v in items)
    if not ok:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        many = "" if n == 1 else f" or a sequence of {n} of them"
        raise ValueError(f"{what}: expected {kind}{many}, got {describe(value)}")
    return tuple(int(v) for v in items)


def window_output(layer, spatial, kernel, stride, padding, given: str):
    """Output sizes of a window ``kernel`` moved by ``stride`` over ``spatial`` padded by
    ``padding`` (free sizes stay free); a ValueError naming ``layer`` (and its axis, from
    ``layer.axes``) when an input is smaller than its window."""
    out, names = [], layer.axes.split(", ")
    for axis, (d, k, s, p) in enumerate(zip(spatial, kernel, stride, padding)):
        if is_any_size(d):
            out.append(ANY_SIZE)
            continue
        if d + 2 * p < k:
            pad = f" plus padding {p} on each side" if p else ""
            raise ValueError(f"{layer.label}: {given} is too small for the kernel: "
                             f"its {names[axis]} is {d}{pad}, less than the kernel's {k}")
        out.append((d + 2 * p - k) // s + 1)
    return tuple(out)


class _Conv(Layer):
    """A convolution over ``ndim`` spatial axes (``Conv1D``, ``Conv2D``)."""

    ndim = 0
    axes = ""  # how docs and errors name the spatial axes
    _cached = ("_cache",)
    #: backward(grad, need_input_grad=False) skips the input gradient (first layer).
    skips_input_grad = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, activation: str | None = None, init: str | None = None,
                 activation_params: dict | None = None, name: str | None = None):
        super().__init__(name)
        kind = type(self).__name__
        self.in_channels = positive_int(in_channels, f"{kind} in_channels")
        self.out_channels = positive_int(out_channels, f"{kind} out_channels")
        self.kernel_size = as_tuple(kernel_size, self.ndim, f"{kind} kernel_size")
        self.stride = as_tuple(stride, self.ndim, f"{kind} stride")
        self.padding = as_tuple(padding, self.ndim, f"{kind} padding", minimum=0)
        self.activation_fn, self.activation_params = _act.get(activation,
                                                              **(activation_params or {}))
        self.activation = self.activation_fn.name
        self.init = init or _init.default_for(self.activation)
        _init.get(self.init)
        self._cache = None  # the backend's record of the last forward pass

    def _describe_args(self) -> str:
        k = self.kernel_size[0] if self.ndim == 1 else self.kernel_size
        text = f"{self.in_channels}, {self.out_channels}, {k}"
        if any(s != 1 for s in self.stride):
            text += f", stride={self.stride[0] if self.ndim == 1 else self.stride}"
        if any(self.padding):
            text += f", padding={self.padding[0] if self.ndim == 1 else self.padding}"
        if self.activation != "identity":
            text += f", activation={self.activation!r}"
        return text

    # ------------------------------------------------------------------ shapes, params
    @property
    def _patch(self) -> int:
        """Values in one patch: ``in_channels * prod(kernel_size)``."""
        size = self.in_channels
        for k in self.kernel_size:
            size *= k
        return size

    def param_shapes(self) -> dict:
        return {"W": (self.out_channels, self.in_channels) + self.kernel_size,
                "b": (self.out_channels,)}

    def allocate(self, backend) -> None:
        # Fans count the kernel's positions (PyTorch's and Keras's convention): a patch
        # feeds each output unit, and each input value reaches out_channels * K units.
        positions = self._patch // self.in_channels
        W = _init.get(self.init)(backend, self._patch, self.out_channels * positions,
                                 shape=self.param_shapes()["W"])
        self.add_param("W", W)
        self.add_param("b", backend.zeros((self.out_channels,)))

    def input_shape(self) -> tuple:
        return (self.in_channels,) + (ANY_SIZE,) * self.ndim

    def output_shape(self, input_shape):
        if input_shape is None:
            return (self.out_channels,) + (ANY_SIZE,) * self.ndim
        if len(input_shape) != 1 + self.ndim or input_shape[0] != self.in_channels:
            raise ValueError(f"{self.label}: expects inputs of shape (batch, "
                             f"{self.in_channels}, {self.axes}), the layer before it gives "
                             f"{show_shape(input_shape)}")
        return (self.out_channels,) + window_output(
            self, tuple(input_shape[1:]), self.kernel_size, self.stride, self.padding,
            f"an input of shape {show_shape(input_shape)}")

    def _check_input(self, x) -> tuple:
        """The output's spatial sizes for ``x``, or a ValueError naming this layer."""
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 2 + self.ndim or shape[1] != self.in_channels:
            raise ValueError(f"{self.label}: expected input of shape (batch, "
                             f"{self.in_channels}, {self.axes}), got {describe(x)}")
        return window_output(self, shape[2:], self.kernel_size, self.stride, self.padding,
                             f"an input of shape {shape}")

    # ------------------------------------------------------------------ computing
    def forward(self, x, training: bool = False):
        """``x (batch, in_channels, *spatial)`` -> ``(batch, out_channels, *out)`` with
        ``out = (spatial + 2 * padding - kernel_size) // stride + 1`` per axis."""
        self._require_built()
        self._check_input(x)
        y, self._cache = self.backend.conv_forward(
            x, self.params["W"], self.params["b"], self.stride, self.padding,
            self.activation_fn, self.activation_params, cache=self._cache)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        """Backpropagate ``dL/dy (batch, out_channels, *out)``; fills ``grads`` and
        returns ``dL/dx (batch, in_channels, *spatial)`` (None when ``need_input_grad``
        is False: the model's first layer skips it)."""
        self._require_forward("_cache")
        act = None if self.activation == "identity" else self.activation_fn
        gW, gb, gx = self.backend.conv_backward(
            self._cache, self.params["W"], grad_out, self.stride, self.padding, act,
            self.activation_params, need_input_grad,
            out=(self.grads["W"], self.grads["b"]))
        self.grads["W"], self.grads["b"] = gW, gb
        return gx

    # ------------------------------------------------------------------ description
    def to_onnx(self, graph, x: str, path: str) -> str:
        """``Conv`` (same weight layout), then the activation (a softmax over channels)."""
        z = graph.node("Conv", [x, graph.param(f"{path}.W", self.params["W"]),
                                graph.param(f"{path}.b", self.params["b"])],
                       kernel_shape=list(self.kernel_size), strides=list(self.stride),
                       pads=list(self.padding) * 2)
        if self.activation == "softmax":  # over the channel axis, as forward computes it
            return graph.node("Softmax", [z], axis=1)
        return graph.activation(self, z)

    def get_config(self) -> dict:
        one = self.ndim == 1
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": self.kernel_size[0] if one else list(self.kernel_size),
               "stride": self.stride[0] if one else list(self.stride),
               "padding": self.padding[0] if one else list(self.padding),
               "activation": self.activation, "init": self.init}
        if self.activation_params:
            cfg["activation_params"] = dict(self.activation_params)
        return cfg


_PARAMETERS = """
    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int{pair}
    stride : int{pair}, default 1
    padding : int{pair}, default 0
        Zeros added before and after each spatial axis.
    activation : str, optional
        Any name of :data:`gpunn.activations.ACTIVATIONS` (a softmax is taken over the
        channels at each position); ``None`` is identity.
    init : str, optional
        As :class:`Dense`'s; default He before ReLU-like activations, Xavier otherwise,
        with fans ``in_channels * prod(kernel_size)`` and ``out_channels *
        prod(kernel_size)``.
    activation_params : dict, optional
    name : str, optional

    Raises
    ------
    ValueError
        A bad setting (naming it); when built or run, an input whose channels differ from
        ``in_channels`` or that is smaller than the kernel (naming the layer)."""


@register
class Conv1D(_Conv):
    __doc__ = """Cross-correlation over one spatial axis (PyTorch's ``Conv1d``).
    """ + _PARAMETERS.format(pair="") + """

    Notes
    -----
    Shapes: ``x (batch, in_channels, length)``, ``W (out_channels, in_channels,
    kernel_size)``, ``b (out_channels,)``, output ``(batch, out_channels, out_length)``
    with ``out_length = (length + 2 * padding - kernel_size) // stride + 1``.
    """

    ndim = 1
    axes = "length"


@register
class Conv2D(_Conv):
    __doc__ = """Cross-correlation over two spatial axes (PyTorch's ``Conv2d``).
    """ + _PARAMETERS.format(pair=" or (int, int)") + """

    Notes
    -----
    Shapes: ``x (batch, in_channels, height, width)``, ``W (out_channels, in_channels,
    kh, kw)``, ``b (out_channels,)``, output ``(batch, out_channels, out_height,
    out_width)``, each ``(size + 2 * padding - kernel) // stride + 1``.

    Examples
    --------
    >>> import gpunn as gn
    >>> net = gn.Sequential([gn.Conv2D(1, 4, 3, activation="relu"), gn.Flatten(),
    ...                      gn.Dense(4 * 6 * 6, 10, activation="softmax")], device="cpu")
    >>> net.output_shape((1, 8, 8))
    (10,)
    """

    ndim = 2
    axes = "height, width"
