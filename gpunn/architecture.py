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
