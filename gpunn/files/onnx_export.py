"""ONNX export: a model as a standard ONNX graph that runs without gpunn (onnxruntime,
TensorRT, OpenVINO, ONNX.js, ...).

The graph
---------
- input ``"input"``: ``(batch, *input_shape)`` float32 (``(batch, in_features)`` for a
  model starting with a Dense), the batch and any free size (a convolution's height and
  width) symbolic;
- the model's :class:`~gpunn.preprocessing.Standardizer`, when it has one, as ``Sub`` (the
  mean) and ``Mul`` (``1 / scale``): the arithmetic ``predict`` does;
- each layer adds its own nodes (``layer.to_onnx(graph, x, path)``, walking blocks): one
  ``Gemm`` per :class:`~gpunn.layers.Dense` (``W`` is ``(in, out)``: no transpose), then
  its activation as standard operators (table :data:`ACTIVATIONS`); ``Dropout`` is
  nothing at inference; a ``Residual`` is an ``Add`` of its input and its layers'
  output; convolutions, pooling, normalisation, embeddings and shape layers map to
  ``Conv``, ``MaxPool``/``AveragePool``/``GlobalAveragePool``, ``BatchNormalization``,
  ``LayerNormalization`` (opset 17), ``Gather``, ``Flatten`` and ``Reshape``; a layer
  without ``to_onnx`` is refused by name;
- the model's ``target_scaler``, when it has one (a regression trained by ``gpunn
  train``), as ``Mul`` (the scale) and ``Add`` (the mean) after the last layer;
- output ``"output"``: ``(batch, *output_shape)``, what ``predict`` returns
  (probabilities after a softmax or sigmoid, regression targets in their own units).

Choices
-------
- float32 always: float64, float16 and bfloat16 models are exported with their weights
  cast to float32. Runtimes implement many operators in float32 only (onnxruntime's CPU
  ``Elu`` and ``Softplus`` have no float64 kernel), and float32 holds every 16-bit weight
  exactly; a float64 model's outputs then match ``predict`` to float32 tolerance.
- opset 17 by default (onnxruntime 1.12+, TensorRT 8.5+): widely run, and every operator
  used is unchanged since opset 13, the lowest accepted. GELU is composed of ``Tanh``,
  ``Mul`` and ``Add`` (the tanh form gpunn computes) instead of opset 20's ``Gelu``, so
  it runs on older runtimes; the IR version is the lowest that carries the opset.
- ``model.extra`` (class labels, ...) is kept as the metadata entry ``gpunn.extra`` (JSON).
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..atomic import atomic_path
from ..backend.ops import host_array

DEFAULT_OPSET, MIN_OPSET = 17, 13
INSTALL_HINT = 'ONNX export needs the onnx package: pip install "gpunn[onnx]"'
#: A protobuf message (the whole file, weights inside) must stay under 2 GiB.
MAX_BYTES = 2**31 - 2**24


def require():
    """The ``onnx`` module, or an ImportError with the install line."""
    try:
        import onnx
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return onnx


class _Graph:
    """Nodes and initialisers being collected, with unique names."""

    def __init__(self, onnx, opset: int = DEFAULT_OPSET):
        self.onnx, self.nodes, self.initializers, self._count = onnx, [], [], 0
        #: The operator set being written: a layer whose operator is newer refuses.
        self.opset = opset

    def const(self, name: str, value) -> str:
        array = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def scalar(self, value: float) -> str:
        self._count += 1
        return self.const(f"c{self._count}", value)

    def ints(self, name: str, values) -> str:
        """A 1-D int64 initializer (shapes, axes, pads that operators take as inputs)."""
        array = np.asarray(values, dtype=np.int64).reshape(-1)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def param(self, path: str, value) -> str:
        """A parameter as a float32 initializer named by its path (``"2.0.W"``)."""
        return self.const(path, host_array(value))

    def activation(self, layer, x: str) -> str:
        """The nodes of ``layer``'s activation (``layer.activation`` and its
        ``activation_params``) applied to ``x``."""
        return _builder(layer)(self, x, layer.activation_params)

    def node(self, op: str, inputs, **attrs) -> str:
        self._count += 1
        out = f"{op.lower()}_{self._count}"
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out],
                                                     name=f"{op}_{self._count}", **attrs))
        return out


def _binary_step(g, x, p):
    # y = 1 where x >= 0, else 0 (NaN gives 0), as gpunn's astype(z >= 0).
    return g.node("Cast", [g.node("GreaterOrEqual", [x, g.scalar(0.0)])],
                  to=g.onnx.TensorProto.FLOAT)


def _gelu(g, x, p):
    # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3))): gpunn's tanh form.
    cube = g.node("Mul", [x, g.node("Mul", [x, x])])
    inner = g.node("Add", [x, g.node("Mul", [cube, g.scalar(0.044715)])])
    t = g.node("Tanh", [g.node("Mul", [inner, g.scalar(math.sqrt(2.0 / math.pi))])])
    half_x = g.node("Mul", [x, g.scalar(0.5)])
    return g.node("Mul", [half_x, g.node("Add", [t, g.scalar(1.0)])])


#: Activation name -> builder ``(graph, input name, params) -> output name``. An activation
#: missing here is refused by name (tests check that every gpunn activation is here).
ACTIVATIONS = {
    "identity": lambda g, x, p: x,
    "linear": lambda g, x, p: g.node("Mul", [x, g.scalar(p["a"])]),
    "sigmoid": lambda g, x, p: g.node("Sigmoid", [x]),
    "tanh": lambda g, x, p: g.node("Tanh", [x]),
    "binary_step": _binary_step,
    "relu": lambda g, x, p: g.node("Relu", [x]),
    "leaky_relu": lambda g, x, p: g.node("LeakyRelu", [x], alpha=float(p["alpha"])),
    "softmax": lambda g, x, p: g.node("Softmax", [x], axis=-1),
    "elu": lambda g, x, p: g.node("Elu", [x], alpha=float(p["alpha"])),
    "gelu": _gelu,
    "softplus": lambda g, x, p: g.node("Softplus", [x]),
}


def _builder(layer):
    """The builder of a Dense or activation layer's activation; a ValueError naming the
    layer when there is none."""
    build = ACTIVATIONS.get(layer.activation)
    if build is None:
        raise ValueError(f"to_onnx: {layer.label}: activation {layer.activation!r} has no "
                         f"ONNX form; exported: {', '.join(ACTIVATIONS)}")
    return build


def _check(model, opset) -> None:
    """Refuse, before anything is built, what the graph cannot express."""
    if isinstance(opset, bool) or not isinstance(opset, int) or \
            not MIN_OPSET <= opset <= require().defs.onnx_opset_version():
        raise ValueError(f"opset: expected an integer from {MIN_OPSET} to "
                         f"{require().defs.onnx_opset_version()}, got {opset!r}")
    for _, layer in model.walk():
        if getattr(layer, "to_onnx", None) is None:
            raise ValueError(f"to_onnx: {layer.label} has no ONNX form; gpunn exports Dense, "
                             "Dropout, activation layers, blocks of them, and any layer "
                             "that defines to_onnx(graph, x, path)")
    if model.input_shape() is None:
        raise ValueError("to_onnx: the model has no Dense layer (nor another layer that "
                         "fixes its input shape, such as a convolution), so its input "
                         "shape is unknown")
    prep = model.preprocessor
    if prep is not None and getattr(prep, "kind", None) != "standardize":
        raise ValueError(f"to_onnx: preprocessing {type(prep).__name__} has no ONNX form; "
                         "exported: Standardizer")
    if prep is not None and (prep.mean is None or np.shape(prep.mean) != (model.input_dim,)):
        raise ValueError(f"to_onnx: the model's Standardizer should be fitted on "
                         f"{model.input_dim} features, got mean "
                         f"{None if prep.mean is None else np.shape(prep.mean)}")
    scaler = getattr(model, "target_scaler", None)
    if scaler is not None and (scaler.mean is None or np.shape(scaler.mean) != (
            model.output_dim,)):
        raise ValueError(f"to_onnx: the model's target scaling should hold "
                         f"{model.output_dim} outputs, got mean "
                         f"{None if scaler.mean is None else np.shape(scaler.mean)}")
    if 4 * model.count_params() > MAX_BYTES:
        raise ValueError(f"to_onnx: {model.count_params():,} float32 parameters exceed "
                         "the 2 GiB an ONNX file holds without external data")


def to_onnx_model(model, opset: int = DEFAULT_OPSET):
    """The ONNX graph of ``model`` (see the module notes), checked by
    ``onnx.checker.check_model``.

    Parameters
    ----------
    model : Sequential
    opset : int, default 17
        ONNX operator set, from 13 to the newest the installed ``onnx`` knows.

    Returns
    -------
    onnx.ModelProto
        Input ``"input"`` ``(batch, *input_shape)`` float32, output ``"output"``
        ``(batch, *output_shape)`` float32.

    Raises
    ------
    ImportError
        ``onnx`` is not installed (with the install line).
    ValueError
        A layer, activation or preprocessing with no ONNX form, or a bad ``opset``.
    """
    onnx = require()
    _check(model, opset)
    helper, g = onnx.helper, _Graph(onnx, opset)
    x = "input"
    if model.preprocessor is not None:
        prep = model.preprocessor
        x = g.node("Sub", [x, g.const("preprocessing.mean", prep.mean)])
        x = g.node("Mul", [x, g.const("preprocessing.inv_scale", 1.0 / prep.scale)])
    for i, layer in enumerate(model.layers):
        x = layer.to_onnx(g, x, f"layer{i}")
    scaler = getattr(model, "target_scaler", None)
    if scaler is not None:  # back to the targets' units, as predict does
        x = g.node("Mul", [x, g.const("target_scaling.scale", scaler.scale)])
        x = g.node("Add", [x, g.const("target_scaling.mean", scaler.mean)])
    if x == "input":  # nothing but identities: the graph still needs a node
        x = g.node("Identity", [x])
    for node in g.nodes:  # the last tensor is the graph's output
        node.output[:] = ["output" if name == x else name for name in node.output]
        node.input[:] = ["output" if name == x else name for name in node.input]
    float32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, "gpunn_sequential",
        [helper.make_tensor_value_info("input", float32, _dims(model.input_shape(), "in"))],
        [helper.make_tensor_value_info("output", float32, _dims(
            model.output_shape(model.input_shape()), "out"))],
        initializer=g.initializers, doc_string=repr(model))
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="gpunn",
                              ir_version=helper.find_min_ir_version_for(opsets))
    if model.extra:
        helper.set_model_props(proto, {"gpunn.extra": json.dumps(model.extra)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _dims(shape, prefix: str) -> list:
    """A tensor's dimensions: the batch and free sizes (a convolution's height and width)
    symbolic, the rest fixed."""
    from ..layers.base import is_any_size

    return ["batch"] + [f"{prefix}_{i + 1}" if shape is None or is_any_size(d) else int(d)
                        for i, d in enumerate(shape or (None,))]


def save_onnx(model, path, opset: int = DEFAULT_OPSET) -> None:
    """Write :func:`to_onnx_model` to ``path`` atomically (temporary file, fsync,
    rename); parameters as for :func:`to_onnx_model`."""
    data = to_onnx_model(model, opset).SerializeToString()
    with atomic_path(path, suffix=".onnx.tmp") as tmp, open(tmp, "wb") as fh:
        fh.write(data)
