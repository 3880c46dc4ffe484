"""``gpunn train --arch net.json``: a network read from a JSON list of layer dicts (see
:mod:`gpunn.architecture`), fitted to the data before training starts.

The checks here run before any training: the network's input must take the data's
samples (a ``Reshape`` to the dataset's sample shape is put first when the network begins
with a convolution or another layer of multi-axis inputs), and its output must fit the
task and the loss (one output per class, ending in the activation the loss expects).
"""

from __future__ import annotations

import json

from .architecture import layers_from_architecture
from .cli_train import clip
from .layers import ActivationLayer, Block, Dense, Reshape
from .layers.base import show_shape
from .layers.blocks import input_shape_of
from .model import Sequential

#: The output activation each default loss takes (it reads probabilities, not logits).
LOSS_ACTIVATION = {"categorical_crossentropy": "softmax", "binary_crossentropy": "sigmoid"}


def read(path: str) -> list:
    """The list of layer dicts in the JSON file ``path``.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        It is not JSON (naming the line and column) or not a non-empty list.
    """
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}") from None
    if not isinstance(arch, list) or not arch:
        kind = "an empty list" if arch == [] else f"a JSON {type(arch).__name__}"
        raise ValueError(f"{path}: expected a JSON list of layer dicts (e.g. [{{\"type\": "
                         f"\"dense\", \"in_features\": 4, \"out_features\": 3}}]), got {kind}")
    return arch


def build(path: str, arch: list, data, name: str, outputs: int, loss: str, backend,
          seed: int):
    """The model ``arch`` describes, fitted to ``data`` and checked against the task.

    Parameters
    ----------
    path : str
        The file ``arch`` came from (errors and notes name it).
    arch : list of dict
    data : Dataset
        Its flat features ``X (N, features)`` and ``sample_shape``.
    name : str
        How messages name the data.
    outputs : int
        Values per sample the task needs (classes, 1 for binary, targets).
    loss : str
    backend, seed
        For :class:`gpunn.Sequential`.

    Returns
    -------
    model : Sequential
    notes : list of str
        What was added to the network and why.

    Raises
    ------
    ValueError
        One sentence naming the file and the layer: a layer dict that does not build, an
        input the data cannot feed, an output the task cannot use.
    """
    try:
        layers = layers_from_architecture(arch)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    layers, notes = _fit_input(path, layers, data, name)
    shape = _walk(path, layers, (data.X.shape[1],), name)
    _check_output(path, layers[-1], shape, data, name, outputs, loss)
    try:
        model = Sequential(layers, device=backend, seed=seed)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return model, notes


def _fit_input(path, layers, data, name):
    """``layers`` with a Reshape to the sample shape first when they need one."""
    wanted = input_shape_of(layers)
    if isinstance(layers[0], Reshape) or wanted is None or len(wanted) == 1:
        return layers, []
    first = layers[0]
    if data.sample_shape is None:
        raise ValueError(f"{path}: the network begins with {first!r}, which takes inputs of "
                         f"shape {show_shape(wanted)}, but {name} has flat rows of "
                         f"{data.X.shape[1]} features and no sample shape; begin the "
                         "network with a reshape, e.g. {\"type\": \"reshape\", \"shape\": "
                         f"[{', '.join(map(str, wanted))}]}} with the sizes filled in")
    shape = tuple(data.sample_shape)
    note = (f"{path} begins with {first!r}, which takes inputs of shape "
            f"{show_shape(wanted)}: Reshape({shape}) put first, so the model takes the flat "
            f"rows of {name} ({data.X.shape[1]} features) and is saved with the reshape")
    return [Reshape(shape), *layers], [note]


def _walk(path, layers, shape, name):
    """The per-sample output shape of ``layers`` on inputs of ``shape``, or a ValueError
    naming the first layer that does not take what comes to it."""
    source = None  # the data
    for i, layer in enumerate(layers):
        wanted = layer.input_shape()
        if wanted is not None and tuple(wanted) != tuple(shape):
            if len(wanted) == len(shape) == 1 and isinstance(layer, (Dense, Block)):
                need = f"{wanted[0]} features"
                have = f"{source} outputs {shape[0]}" if source else \
                    f"{name} has {shape[0]} features"
            else:
                need = f"inputs of shape {show_shape(wanted)}"
                have = f"{source or name} {'outputs' if source else 'gives'} " \
                    f"{show_shape(shape)}"
            raise ValueError(f"{path}: layer {i} ({layer!r}) expects {need}, but {have}")
        try:
            shape = layer.output_shape(shape)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None  # the message names the layer
        source = f"layer {i} ({layer!r})"
    return shape


def _check_output(path, last, shape, data, name, outputs: int, loss: str) -> None:
    if tuple(shape) != (outputs,):
        what = (f"{len(data.classes)} classes" if data.task == "multiclass" else
                "two classes (one sigmoid output)" if data.task == "binary" else
                f"{outputs} target{'s' if outputs != 1 else ''}")
        raise ValueError(f"{path}: the network outputs {show_shape(shape)} per sample, but "
                         f"{name} has {what}: end it with a layer of {outputs} output"
                         f"{'s' if outputs != 1 else ''}")
    wanted = LOSS_ACTIVATION.get(loss)
    leaf = last.output_layer()
    activation = getattr(leaf, "activation", None) if leaf is not None else None
    if wanted and activation != wanted:
        given = f"a {activation} activation" if activation not in (None, "identity") else \
            "no activation"
        raise ValueError(f"{path}: the last layer ({last!r}) has {given}, but the loss "
                         f"{loss} ({data.task}) takes probabilities: give it \"activation\": "
                         f"\"{wanted}\"")


def describe(model) -> list[str]:
    """Ways to name the network in the header, longest first: each layer in short (with
    its kernel, stride and activation, then without), then that shortened."""
    detailed, compact = (", ".join(_short(layer, detail) for layer in model.layers)
                         for detail in (True, False))
    # The header prefers any alternative that fits beside the loss on one line, so none
    # is as terse as a bare layer count: a long network is shortened in the middle.
    return [detailed, compact, clip(compact, 60)]


def _short(layer, detail: bool = True) -> str:
    """``conv1d 25 k5 s2 relu``, ``dense 10 softmax``, ``residual[dense 100 relu]``;
    without ``detail``, the kind and width alone (``conv1d 25``)."""
    kind = type(layer).__name__.lower()
    if isinstance(layer, ActivationLayer):
        return layer.activation
    if isinstance(layer, Block):
        return f"{kind}[{', '.join(_short(child, detail) for child in layer.layers)}]"
    if isinstance(layer, Reshape):
        return f"{kind} {'x'.join(map(str, layer.shape))}"
    if not detail:
        width = getattr(layer, "out_features", getattr(layer, "out_channels", None))
        return kind if width is None else f"{kind} {width}"
    parts = [kind]
    if isinstance(layer, Dense):
        parts.append(str(layer.out_features))
    elif hasattr(layer, "out_channels"):
        parts += [str(layer.out_channels), f"k{_size(layer.kernel_size)}"]
        if any(s != 1 for s in layer.stride):
            parts.append(f"s{_size(layer.stride)}")
    elif hasattr(layer, "kernel_size"):
        parts.append(_size(layer.kernel_size))
    activation = getattr(layer, "activation", None)
    if activation not in (None, "identity"):
        parts.append(activation)
    return " ".join(parts)


def _size(sizes) -> str:
    """``3`` for (3, 3), ``3x2`` for (3, 2)."""
    return str(sizes[0]) if len(set(sizes)) == 1 else "x".join(map(str, sizes))
