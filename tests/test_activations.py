"""Activations (gpunn.activations): forward against float64 reference formulas,
gradients by central differences, stability for large inputs, their parameters."""

import math
import warnings

import numpy as np
import pytest

import gpunn as gn
from gpunn.activations import ACTIVATIONS


def _ref(name, z):
    """Straightforward float64 NumPy reference formulas."""
    if name in ("identity",):
        return z
    if name == "linear":
        return 1.0 * z
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "binary_step":
        return (z >= 0).astype(float)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(z))
    if name == "gelu":
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    if name == "softplus":
        return np.log1p(np.exp(z))
    raise AssertionError(name)


def _inputs(rng, shape=(5, 4)):
    # Keep away from 0 so the kinks of relu / step do not sit inside a finite difference.
    z = rng.uniform(-3, 3, shape)
    return np.where(np.abs(z) < 0.05, 0.3, z)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_forward_matches_reference(backend, name, rng):
    z = _inputs(rng)
    layer = gn.ActivationLayer(name).build(backend)
    y = layer.forward(backend.asarray(z))
    assert y.dtype == backend.dtype, "activation must not change the dtype"
    np.testing.assert_allclose(gn.to_numpy(y), _ref(name, z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gradient_check(backend64, name, rng):
    layer = gn.ActivationLayer(name).build(backend64)
    result = gn.gradcheck(layer, _inputs(rng))
    assert result.ok, result


@pytest.mark.parametrize("params", [{"alpha": 0.2}, {"alpha": 1.5}])
@pytest.mark.parametrize("name", ["leaky_relu", "elu"])
def test_gradient_check_with_alpha(backend64, name, params, rng):
    layer = gn.ActivationLayer(name, **params).build(backend64)
    assert gn.gradcheck(layer, _inputs(rng)).ok


def test_linear_slope(backend64, rng):
    layer = gn.Linear(a=-2.5).build(backend64)
    z = _inputs(rng)
    np.testing.assert_allclose(gn.to_numpy(layer.forward(backend64.asarray(z))), -2.5 * z)
    assert gn.gradcheck(layer, z).ok


@pytest.mark.parametrize("name", ["sigmoid", "softmax", "softplus", "tanh", "elu", "gelu"])
def test_stable_for_large_inputs(backend, name):
    z = np.array([[-1e4, -800.0, 0.0, 800.0, 1e4]], dtype=np.float32)
    layer = gn.ActivationLayer(name).build(backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow warnings fail the test
        y = gn.to_numpy(layer.forward(backend.asarray(z)))
        g = gn.to_numpy(layer.backward(backend.asarray(np.ones_like(z))))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(g))
    if name == "sigmoid":
        np.testing.assert_allclose(y, [[0, 0, 0.5, 1, 1]], atol=1e-7)
    if name == "softmax":
        np.testing.assert_allclose(y, [[0, 0, 0, 0, 1]], atol=1e-7)


def test_binary_step_passes_no_gradient(backend):
    layer = gn.BinaryStep().build(backend)
    layer.forward(backend.asarray([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(gn.to_numpy(layer.backward(backend.asarray([[1.0, 1, 1]]))),
                                  [[0, 0, 0]])


def test_convenience_classes():
    for cls, name in [(gn.ReLU, "relu"), (gn.Sigmoid, "sigmoid"), (gn.Tanh, "tanh"),
                      (gn.Softmax, "softmax"), (gn.LeakyReLU, "leaky_relu"), (gn.GELU, "gelu"),
                      (gn.ELU, "elu"), (gn.Softplus, "softplus"), (gn.Identity, "identity"),
                      (gn.BinaryStep, "binary_step"), (gn.Linear, "linear")]:
        assert cls().activation == name


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu"):
        gn.Dense(2, 3, activation="swish")
    with pytest.raises(ValueError, match="unknown parameter"):
        gn.ActivationLayer("relu", alpha=0.1)


@pytest.mark.parametrize("params,match", [({"alpha": float("nan")}, "finite"),
                                          ({"alpha": 1e9}, "magnitude"),
                                          ({"alpha": "0.2"}, "finite number")])
def test_activation_parameters_are_checked(params, match):
    with pytest.raises(ValueError, match=match):
        gn.Dense(2, 2, activation="leaky_relu", activation_params=params)
