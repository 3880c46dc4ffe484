"""Networks as data: a list of ``{"input_dim", "output_dim", "activation"}`` dicts.

The classic from-scratch way to describe a dense network; :meth:`gpunn.Sequential.
from_architecture` builds a model from it.
"""

from __future__ import annotations

from .errors import describe
from .layers import Dense, Dropout, Layer

ARCH_REQUIRED = ("input_dim", "output_dim")
ARCH_OPTIONAL = ("activation", "init", "kernel_l2", "dropout", "activation_params")


def layers_from_architecture(architecture) -> list[Layer]:
    """The layers a list of layer dicts describes.

    Parameters
    ----------
    architecture : list of dict
        Each ``{"input_dim": int, "output_dim": int, "activation": str}``; optional keys
        ``init``, ``kernel_l2``, ``activation_params`` and ``dropout`` (a Dropout of that
        rate after the layer).

    Returns
    -------
    list of Layer
        Not built yet (a Sequential builds them on its device).

    Raises
    ------
    ValueError, TypeError
        Naming the entry (``architecture[i]``), what was expected and what was given.
    """
    if not isinstance(architecture, (list, tuple)) or not architecture:
        raise ValueError(f"architecture: expected a non-empty list of dicts, got "
                         f"{describe(architecture)}")
    layers: list[Layer] = []
    for i, spec in enumerate(architecture):
        _check_spec(i, spec)
        try:
            layers.append(Dense(spec["input_dim"], spec["output_dim"],
                                activation=spec.get("activation"), init=spec.get("init"),
                                kernel_l2=spec.get("kernel_l2", 0.0),
                                activation_params=spec.get("activation_params")))
            if spec.get("dropout"):
                layers.append(Dropout(spec["dropout"]))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"architecture[{i}]: {exc}") from None
    return layers


def _check_spec(i: int, spec) -> None:
    if not isinstance(spec, dict):
        raise TypeError(f"architecture[{i}]: expected a dict, got {describe(spec)}")
    missing = [k for k in ARCH_REQUIRED if k not in spec]
    unknown = sorted(set(spec) - set(ARCH_REQUIRED) - set(ARCH_OPTIONAL))
    if missing or unknown:
        problems = ([f"missing key(s) {missing}"] if missing else []) + (
            [f"unknown key(s) {unknown}"] if unknown else [])
        raise ValueError(f"architecture[{i}]: {' and '.join(problems)}; expected "
                         f"{list(ARCH_REQUIRED)} and optionally {list(ARCH_OPTIONAL)}")


def check_layers(layers) -> None:
    """A layer list a Sequential can use: sizes chain, and no layer is used twice."""
    _check_chain(layers)
    _check_unshared(layers)


def _check_unshared(layers) -> None:
    """A layer holds its own parameters, gradients and last activations: used twice (in
    one model or in two) its gradients would be silently wrong, so that is refused."""
    seen = {}
    for i, layer in enumerate(layers):
        if id(layer) in seen:
            raise ValueError(f"Sequential layers[{i}] is the same object as layers"
                             f"[{seen[id(layer)]}] ({layer!r}); a layer keeps its own "
                             "activations and gradients, so use a new layer (or "
                             "layer.clone()) for each position")
        seen[id(layer)] = i
        owner = layer._owner() if getattr(layer, "_owner", None) is not None else None
        if owner is not None:
            raise ValueError(f"Sequential layers[{i}] ({layer!r}) already belongs to "
                             "another Sequential; sharing it would mix both models' "
                             "gradients: use layer.clone() or a new layer")


def _check_chain(layers) -> None:
    width, source = None, None
    for i, layer in enumerate(layers):
        if layer.in_features is not None and width is not None and layer.in_features != width:
            raise ValueError(f"layers do not chain: layer {i} ({layer!r}) expects "
                             f"in_features={layer.in_features}, but layer {source} outputs "
                             f"{width} features")
        new = layer.output_shape(width)
        if new != width:
            width, source = new, f"{i} ({layer!r})"
