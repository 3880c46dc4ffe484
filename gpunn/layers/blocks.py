"""Blocks: layers made of layers. ``Block`` runs its children in order; ``Residual``
adds its input to what they compute.

A block is a layer like any other (it has a config, a shape rule, forward and backward),
so blocks nest, and everything that walks a model (files, devices, copies, gradcheck,
ONNX) reaches the layers inside them.
"""

from __future__ import annotations

from ..errors import describe
from .base import Layer, layer_from_spec, register


def _as_layer_list(layers, owner: str) -> list:
    if isinstance(layers, Layer):
        layers = [layers]
    layers = list(layers) if isinstance(layers, (list, tuple)) else layers
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{owner} layers: expected a non-empty list of layers, got "
                         f"{describe(layers)}")
    seen = {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"{owner} layers[{i}]: expected a gpunn Layer, got "
                            f"{describe(layer)}")
        if id(layer) in seen:
            raise ValueError(f"{owner} layers[{i}] is the same object as layers"
                             f"[{seen[id(layer)]}] ({layer!r}); a layer keeps its own "
                             "activations and gradients, so use a new layer (or "
                             "layer.clone()) for each position")
        seen[id(layer)] = i
        if layer._parent is not None:
            raise ValueError(f"{owner} layers[{i}] ({layer!r}) already belongs to another "
                             "Sequential or block; sharing it would mix both models' gradients: "
                             "use layer.clone() or a new layer")
    return layers


@register
class Block(Layer):
    """Layers applied one after another, as one layer (children named ``"0"``, ``"1"``,
    ...).

    Parameters
    ----------
    layers : list of Layer
        Shapes must chain: each layer accepts what the one before it outputs (checked
        here, naming the layers).
    name : str, optional

    Notes
    -----
    Shapes: input ``(batch, *input_shape)`` of the first layer, output that of the last.
    """

    skips_input_grad = True

    def __init__(self, layers, name: str | None = None):
        super().__init__(name)
        layers = _as_layer_list(layers, type(self).__name__)
        _check_chain(layers)
        for i, layer in enumerate(layers):
            self.add(str(i), layer)

    def _children_changed(self) -> None:
        # Read at every step: tuples, not a list built from the dict each time.
        self._seq = tuple(self._children.values())
        self._skips = tuple(getattr(layer, "skips_input_grad", False) for layer in self._seq)

    @property
    def layers(self) -> list:
        """The child layers, in order."""
        return list(self._seq)

    def _describe_args(self) -> str:
        return "[" + ", ".join(repr(layer) for layer in self._children.values()) + "]"

    def input_shape(self):
        return input_shape_of(self._seq)

    def output_shape(self, input_shape):
        shape = input_shape
        for layer in self._children.values():
            shape = layer.output_shape(shape)
        return shape

    def output_layer(self):
        return self._seq[-1].output_layer()

    def forward(self, x, training: bool = False):
        """``x (batch, *input_shape)`` through every layer in order."""
        for layer in self._seq:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_out, need_input_grad: bool = True):
        """Backpropagate through the layers in reverse; the first skips its input
        gradient when ``need_input_grad`` is False and it can."""
        layers, skips = self._seq, self._skips
        for i in range(len(layers) - 1, -1, -1):
            if i == 0 and not need_input_grad and skips[0]:
                return layers[0].backward(grad_out, need_input_grad=False)
            grad_out = layers[i].backward(grad_out)
        return grad_out

    def forward_logits(self, x, training: bool = False, add_bias: bool = True):
        """As :meth:`forward`, stopping where the output layer's ``forward_logits`` does
        (see :meth:`gpunn.layers.Dense.forward_logits`)."""
        layers = self._seq
        for layer in layers[:-1]:
            x = layer.forward(x, training)
        return layers[-1].forward_logits(x, training, add_bias)

    def backward_logits(self, grad_z, need_input_grad: bool = True, bias_done: bool = False):
        """Backpropagate ``dL/dz`` of the output layer's pre-activation."""
        layers = self._seq
        grad = layers[-1].backward_logits(grad_z, need_input_grad or len(layers) > 1,
                                          bias_done)
        for i in range(len(layers) - 2, -1, -1):
            if i == 0 and not need_input_grad and self._skips[0]:
                return layers[0].backward(grad, need_input_grad=False)
            grad = layers[i].backward(grad)
        return grad

    def to_onnx(self, graph, x: str, path: str) -> str:
        for key, layer in self._children.items():
            x = layer.to_onnx(graph, x, f"{path}.{key}")
        return x

    def get_config(self) -> dict:
        return {"layers": [layer.spec() for layer in self._children.values()]}

    @classmethod
    def from_config(cls, config: dict):
        if "layers" not in config and cls is not Block:
            return cls(**config)  # a block that builds its own layers from its settings
        config = dict(config)
        specs = config.pop("layers", None)
        if not isinstance(specs, list):
            raise ValueError(f"{cls.__name__} config: expected 'layers', a list of layer "
                             f"specs, got {describe(specs)}")
        return cls([layer_from_spec(s, f"layers[{i}]") for i, s in enumerate(specs)],
                   **config)


@register
class Residual(Block):
    """``x + f(x)``, where ``f`` is its layers applied in order (a skip connection).

    Parameters
    ----------
    layers : Layer or list of Layer
        ``f``; its output shape must equal its input shape (checked here when the first
        layer fixes the input shape, else when the model is built).
    name : str, optional

    Examples
    --------
    >>> import gpunn as gn
    >>> block = gn.Residual([gn.Dense(16, 16, activation="relu"), gn.Dense(16, 16)])
    """

    def __init__(self, layers, name: str | None = None):
        super().__init__(layers, name)
        shape = self.input_shape()
        if shape is not None:
            self.output_shape(shape)

    def output_shape(self, input_shape):
        out = super().output_shape(input_shape)
        if input_shape is not None and out is not None and tuple(out) != tuple(input_shape):
            raise ValueError(f"{self.label}: a residual block must keep the shape of its "
                             f"input, but its layers map (batch, "
                             f"{', '.join(map(str, input_shape))}) to (batch, "
                             f"{', '.join(map(str, out))})")
        return input_shape

    def output_layer(self):
        return None  # the output is a sum, not any one layer's activation

    def forward(self, x, training: bool = False):
        """``x + f(x)``; shapes ``(batch, *input_shape)``."""
        return x + super().forward(x, training)

    def backward(self, grad_out, need_input_grad: bool = True):
        return grad_out + super().backward(grad_out, True)

    def to_onnx(self, graph, x: str, path: str) -> str:
        return graph.node("Add", [x, super().to_onnx(graph, x, path)])


def input_shape_of(layers) -> tuple | None:
    """The per-sample input shape a sequence of layers requires (None: any)."""
    for layer in layers:
        shape = layer.input_shape()
        if shape is not None:
            return shape
        if layer.output_shape(None) is not None:  # e.g. a reshape: input unconstrained
            return None
    return None


def _check_chain(layers) -> None:
    """Each layer accepts the shape the layers before it produce (a ValueError naming
    both otherwise)."""
    shape, source = None, None
    for i, layer in enumerate(layers):
        wanted = layer.input_shape()
        if wanted is not None and shape is not None and tuple(wanted) != tuple(shape):
            if len(wanted) == len(shape) == 1:  # the classic dense wording
                need, have = f"in_features={wanted[0]}", f"{shape[0]} features"
            else:
                need = f"inputs of shape (batch, {', '.join(map(str, wanted))})"
                have = f"(batch, {', '.join(map(str, shape))})"
            raise ValueError(f"layers do not chain: layer {i} ({layer!r}) expects {need}, "
                             f"but layer {source} outputs {have}")
        new = layer.output_shape(shape)
        if new is not None and new != shape:
            source = f"{i} ({layer!r})"
        shape = new
