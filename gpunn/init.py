"""Weight initialisers. Each draws from the backend's seeded generator.

``W`` has shape ``(fan_in, fan_out)`` unless ``shape`` says otherwise (a convolution's
``(out_channels, in_channels, *kernel)``, whose fans count the kernel's positions); biases
start at zero.
"""

from __future__ import annotations

import math

from .errors import unknown_name


def he(backend, fan_in: int, fan_out: int, shape: tuple | None = None):
    """He/Kaiming normal: ``N(0, 2 / fan_in)``, for the ReLU family."""
    return backend.random.normal(shape or (fan_in, fan_out), std=math.sqrt(2.0 / fan_in))


def xavier(backend, fan_in: int, fan_out: int, shape: tuple | None = None):
    """Glorot/Xavier uniform: ``U(-l, l)`` with ``l = sqrt(6 / (fan_in + fan_out))``."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return backend.random.uniform(shape or (fan_in, fan_out), -limit, limit)


def xavier_normal(backend, fan_in: int, fan_out: int, shape: tuple | None = None):
    """Glorot/Xavier normal: ``N(0, 2 / (fan_in + fan_out))``."""
    return backend.random.normal(shape or (fan_in, fan_out),
                                 std=math.sqrt(2.0 / (fan_in + fan_out)))


def small(backend, fan_in: int, fan_out: int, shape: tuple | None = None):
    """Standard normal times 0.01, as in the classic from-scratch tutorials."""
    return backend.random.normal(shape or (fan_in, fan_out), std=0.01)


def zeros(backend, fan_in: int, fan_out: int, shape: tuple | None = None):
    """All zeros (fine for biases; for weights it leaves every unit identical)."""
    return backend.zeros(shape or (fan_in, fan_out))


INITIALIZERS = {"he": he, "kaiming": he, "xavier": xavier, "glorot": xavier,
                "xavier_normal": xavier_normal, "glorot_normal": xavier_normal,
                "small": small, "zeros": zeros}

#: Activations for which He initialisation is the default; others get Xavier.
RELU_FAMILY = {"relu", "leaky_relu", "elu", "gelu", "softplus"}


def get(name: str):
    """Look up an initialiser by name.

    Raises
    ------
    ValueError
        Unknown name, listing the valid ones.
    """
    if not isinstance(name, str) or name.lower() not in INITIALIZERS:
        raise unknown_name("initialiser", name, INITIALIZERS)
    return INITIALIZERS[name.lower()]


def default_for(activation: str) -> str:
    """The initialiser used when ``Dense(init=None)``: He before ReLU-like units."""
    return "he" if activation in RELU_FAMILY else "xavier"
