"""Networks as data: a list of layer dicts, as a JSON file holds them.

Two forms, which may be mixed in one list:

- the classic dense form, ``{"input_dim": 2, "output_dim": 25, "activation": "relu"}``
  (optional ``init``, ``kernel_l2``, ``activation_params``, and ``dropout``: a Dropout of
  that rate after the layer);
- the typed form, ``{"type": "conv1d", "in_channels": 1, "out_channels": 25,
  "kernel_size": 5, "stride": 2, "activation": "relu"}``: ``type`` names a registered
  layer (case-insensitively, user layers included) or an activation, and the other keys
  are its constructor's arguments. Blocks (``residual``, ``block``, ``sequential``) take
  ``"layers"``, a list of dicts of either form.

:meth:`gpunn.Sequential.from_architecture` builds a model from such a list.
"""

from __future__ import annotations

import inspect

from . import activations as _act
from .errors import describe
from .layers import LAYERS, ActivationLayer, Block, Dense, Dropout, Layer

ARCH_REQUIRED = ("input_dim", "output_dim")
ARCH_OPTIONAL = ("activation", "init", "kernel_l2", "dropout", "activation_params")
#: The classic form's names for Dense's arguments, accepted in the typed form too.
DENSE_ALIASES = {"input_dim": "in_features", "output_dim": "out_features"}


def layers_from_architecture(architecture, where: str = "architecture") -> list[Layer]:
    """The layers a list of layer dicts describes.

    Parameters
    ----------
    architecture : list of dict
        Each either ``{"input_dim": int, "output_dim": int, "activation": str}`` (optional
        keys ``init``, ``kernel_l2``, ``activation_params`` and ``dropout``: a Dropout of
        that rate after the layer), or ``{"type": name, **arguments}`` where ``name`` is a
        registered layer type or an activation (any case) and ``arguments`` its
        constructor's; a block's ``"layers"`` is a list of such dicts.
    where : str, default "architecture"
        How errors name the list.

    Returns
    -------
    list of Layer
        Not built yet (a Sequential builds them on its device).

    Raises
    ------
    ValueError, TypeError
        Naming the entry (``architecture[2].layers[0] (conv1d)``), what was expected and
        what was given.

    Examples
    --------
    >>> layers = layers_from_architecture([
    ...     {"type": "reshape", "shape": [1, 40]},
    ...     {"type": "conv1d", "in_channels": 1, "out_channels": 8, "kernel_size": 5},
    ...     {"type": "flatten"},
    ...     {"input_dim": 288, "output_dim": 10, "activation": "softmax"}])
    """
    if not isinstance(architecture, (list, tuple)) or not architecture:
        raise ValueError(f"{where}: expected a non-empty list of dicts, got "
                         f"{describe(architecture)}")
    layers: list[Layer] = []
    for i, spec in enumerate(architecture):
        path = f"{where}[{i}]"
        if isinstance(spec, dict) and "type" in spec:
            layers.append(layer_from_dict(spec, path))
        else:
            layers.extend(_dense_layers(spec, path))
    return layers


def layer_from_dict(spec: dict, where: str = "layer") -> Layer:
    """One layer of the typed form, ``{"type": name, **constructor arguments}``.

    Raises
    ------
    ValueError, TypeError
        Naming ``where`` and the type: an unknown type (the known ones listed), missing or
        unknown keys (from the constructor's signature), or the layer's own error about
        a value.
    """
    kind = spec.get("type")
    cls, fixed = _layer_class(kind, where)
    label = f"{where} ({kind})"
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if cls is Dense:
        for alias, key in DENSE_ALIASES.items():
            if alias in kwargs and key in kwargs:
                raise ValueError(f"{label}: give {key!r} or its alias {alias!r}, not both")
            if alias in kwargs:
                kwargs[key] = kwargs.pop(alias)
    _check_keys(cls, kwargs, fixed, label)
    if issubclass(cls, Block):
        kwargs["layers"] = layers_from_architecture(kwargs["layers"], f"{where}.layers")
    try:
        return cls(**fixed, **kwargs)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{label}: {exc}") from None


def _layer_class(kind, where: str):
    """The class a ``type`` names, and the arguments the name itself fixes (an
    activation's name)."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{where}: 'type' must be a layer type name, got {describe(kind)}")
    if kind in LAYERS:
        cls = LAYERS[kind]
    else:
        folded = {name.lower(): name for name in LAYERS}
        cls = LAYERS.get(folded.get(kind.lower()))
    if cls is not None and cls.__name__ == "Sequential":
        return Block, {}  # a model's own device settings mean nothing nested
    if cls is not None:
        return cls, {}
    folded = kind.lower().replace("_", "")
    if folded in {"activation", "activationlayer"}:
        return ActivationLayer, {}
    # "relu", "ReLU", "leaky_relu", "LeakyReLU": the activation layers' names.
    for activation in _act.ACTIVATIONS:
        if activation.replace("_", "") == folded:
            return ActivationLayer, {"activation": activation}
    raise ValueError(f"{where}: unknown layer type {kind!r}; known (any case): "
                     f"{', '.join(sorted(LAYERS))}, or an activation "
                     f"({', '.join(sorted(_act.ACTIVATIONS))})")


def _check_keys(cls, kwargs: dict, fixed: dict, where: str) -> None:
    """Missing and unknown keys, from the constructor's signature."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in params if p.name in named and p.default is p.empty
                and p.name not in fixed]
    missing = [k for k in required if k not in kwargs]
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params)  # an activation's settings
    unknown = [] if open_ended else sorted(set(kwargs) - set(named))
    unknown += sorted(k for k in kwargs if k in fixed)
    if missing or unknown:
        problems = ([f"missing key(s) {missing}"] if missing else []) + (
            [f"unknown key(s) {unknown}"] if unknown else [])
        optional = [k for k in named if k not in required and k not in fixed]
        aliases = (f" (or {', '.join(f'{a} for {k}' for a, k in DENSE_ALIASES.items())})"
                   if cls is Dense else "")
        raise ValueError(f"{where}: {' and '.join(problems)}; expected {required}"
                         f"{aliases} and optionally {optional}")


def _dense_layers(spec, where: str) -> list[Layer]:
    """The classic form: a Dense, and a Dropout after it when ``dropout`` is given."""
    _check_spec(where, spec)
    try:
        layers = [Dense(spec["input_dim"], spec["output_dim"],
                        activation=spec.get("activation"), init=spec.get("init"),
                        kernel_l2=spec.get("kernel_l2", 0.0),
                        activation_params=spec.get("activation_params"))]
        if spec.get("dropout"):
            layers.append(Dropout(spec["dropout"]))
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return layers


def _check_spec(where: str, spec) -> None:
    if not isinstance(spec, dict):
        raise TypeError(f"{where}: expected a dict, got {describe(spec)}")
    missing = [k for k in ARCH_REQUIRED if k not in spec]
    unknown = sorted(set(spec) - set(ARCH_REQUIRED) - set(ARCH_OPTIONAL))
    if missing or unknown:
        problems = ([f"missing key(s) {missing}"] if missing else []) + (
            [f"unknown key(s) {unknown}"] if unknown else [])
        raise ValueError(f"{where}: {' and '.join(problems)}; expected "
                         f"{list(ARCH_REQUIRED)} and optionally {list(ARCH_OPTIONAL)} "
                         "(or a 'type' key naming a layer)")
