"""Activation functions: one table of name -> (forward, backward).

Each forward takes the namespace ``xp`` and a pre-activation ``z`` of shape
``(batch, features)`` and returns ``y`` of the same shape. Each backward takes ``z``,
``y`` and the upstream gradient ``g = dL/dy`` and returns ``dL/dz``; derivatives are
computed from ``y`` where the maths allows, which saves recomputing an exponential.
Python scalars in the formulas keep the array's dtype (Array API promotion rules).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import unknown_name


@dataclass(frozen=True)
class Activation:
    """One activation function and its derivative.

    Attributes
    ----------
    name : str
    forward : callable ``(xp, z, **params) -> y``
    backward : callable ``(xp, z, y, g, **params) -> dL/dz``
    defaults : dict
        Hyper-parameters (``alpha`` for leaky ReLU and ELU, ``a`` for linear).
    """

    name: str
    forward: Callable
    backward: Callable
    defaults: dict = field(default_factory=dict)


def _sigmoid(xp, z):
    # exp of a non-positive number never overflows; both branches are exact.
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# NumPy's where() is about ten times slower than a multiply on float32 data, so the
# piecewise functions below blend with a 0/1 mask (cast once) instead of selecting.
def _positive(xp, z):
    return xp.astype(z > 0, z.dtype)


def _leaky_relu(xp, z, alpha=0.01):
    if 0.0 <= alpha <= 1.0:
        return xp.maximum(z, alpha * z)
    m = _positive(xp, z)
    return z * (alpha + (1.0 - alpha) * m)


def _leaky_relu_backward(xp, z, y, g, alpha=0.01):
    return g * (alpha + (1.0 - alpha) * _positive(xp, z))


def _elu(xp, z, alpha=1.0):
    return xp.maximum(z, 0.0) + alpha * xp.expm1(xp.minimum(z, 0.0))


def _elu_backward(xp, z, y, g, alpha=1.0):
    # d/dz is 1 above zero and alpha * exp(z) = y + alpha at or below it.
    m = _positive(xp, z)
    return g * (m + (1.0 - m) * (y + alpha))


def _softmax(xp, z):
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu_inner(xp, z):
    return _GELU_C * (z + 0.044715 * z * z * z)


def _gelu_forward(xp, z):
    return 0.5 * z * (1.0 + xp.tanh(_gelu_inner(xp, z)))


def _gelu_backward(xp, z, y, g):
    t = xp.tanh(_gelu_inner(xp, z))
    dinner = _GELU_C * (1.0 + 3.0 * 0.044715 * z * z)
    return g * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * dinner)


def _softplus(xp, z):
    return xp.log1p(xp.exp(-xp.abs(z))) + xp.maximum(z, 0.0)


def _binary_step_backward(xp, z, y, g):
    # The step's derivative is zero everywhere it exists: nothing flows back.
    # Use it for output thresholds or the perceptron rule, not in trained hidden layers.
    return xp.zeros_like(g)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("identity", lambda xp, z: z, lambda xp, z, y, g: g),
        Activation("linear", lambda xp, z, a=1.0: a * z,
                   lambda xp, z, y, g, a=1.0: a * g, {"a": 1.0}),
        Activation("sigmoid", _sigmoid, lambda xp, z, y, g: g * y * (1.0 - y)),
        Activation("tanh", lambda xp, z: xp.tanh(z), lambda xp, z, y, g: g * (1.0 - y * y)),
        Activation("binary_step", lambda xp, z: xp.astype(z >= 0, z.dtype),
                   _binary_step_backward),
        Activation("relu", lambda xp, z: xp.maximum(z, 0.0),
                   lambda xp, z, y, g: g * _positive(xp, z)),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_backward, {"alpha": 0.01}),
        Activation("softmax", _softmax,
                   lambda xp, z, y, g: y * (g - xp.sum(g * y, axis=-1, keepdims=True))),
        Activation("elu", _elu, _elu_backward, {"alpha": 1.0}),
        Activation("gelu", _gelu_forward, _gelu_backward),
        Activation("softplus", _softplus, lambda xp, z, y, g: g * _sigmoid(xp, z)),
    ]
}

IDENTITY = ACTIVATIONS["identity"]

ALIASES = {"none": "identity", "step": "binary_step", "leakyrelu": "leaky_relu",
           "logistic": "sigmoid", "lrelu": "leaky_relu"}


def get(name: str | None, **params) -> tuple[Activation, dict]:
    """Look up an activation by name.

    Parameters
    ----------
    name : str or None
        A key of :data:`ACTIVATIONS` or an alias; ``None`` means identity.
    **params
        Hyper-parameters overriding the activation's defaults (``alpha``, ``a``).

    Returns
    -------
    activation : Activation
    params : dict
        The defaults merged with ``params``.

    Raises
    ------
    ValueError
        Unknown name or hyper-parameter.
    """
    if name is None:
        name = "identity"
    if not isinstance(name, str):
        raise TypeError(f"activation: expected a name (str), got {type(name).__name__}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    act = ACTIVATIONS[key]
    unknown = set(params) - set(act.defaults)
    if unknown:
        raise ValueError(f"activation {key!r}: unknown parameter(s) {sorted(unknown)}; "
                         f"accepted: {sorted(act.defaults) or 'none'}")
    for pname, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                not math.isfinite(value) or abs(value) > 1e6:
            raise ValueError(f"activation {key!r}: parameter {pname!r} must be a finite "
                             f"number of magnitude at most 1e6, got {value!r}")
    return act, {**act.defaults, **{k: float(v) for k, v in params.items()}}
