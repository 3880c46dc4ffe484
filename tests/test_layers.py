"""Layers (gpunn.layers): Dense and Dropout shapes, gradients by central differences,
initialisers, errors naming the layer; random stacks of Dense layers (hypothesis)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpunn as gn
from gpunn.activations import ACTIVATIONS


def test_dense_shapes_and_forward(backend, rng):
    layer = gn.Dense(3, 5).build(backend)
    assert tuple(layer.params["W"].shape) == (3, 5) and tuple(layer.params["b"].shape) == (5,)
    assert set(layer.grads) == set(layer.params)
    x = rng.standard_normal((7, 3)).astype(np.float32)
    W, b = gn.to_numpy(layer.params["W"]), rng.standard_normal(5).astype(np.float32)
    layer.params["b"][...] = backend.asarray(b)  # in-place writes set the weights
    y = layer.forward(backend.asarray(x))
    assert tuple(y.shape) == (7, 5) and y.dtype == backend.dtype
    np.testing.assert_allclose(gn.to_numpy(y), x @ W + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "softmax", None, "gelu"])
def test_dense_gradient_check(backend64, activation, rng):
    layer = gn.Dense(4, 3, activation=activation).build(backend64)
    assert gn.gradcheck(layer, rng.standard_normal((6, 4))).ok


def test_dense_kernel_l2_gradient(backend64, rng):
    model = gn.Sequential([gn.Dense(3, 4, activation="tanh", kernel_l2=0.1),
                           gn.Dense(4, 2, kernel_l2=0.05)], device=backend64, seed=1)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    reg = sum(0.1 * np.sum(gn.to_numpy(lay.params["W"]) ** 2) * (1 if i == 0 else 0.5)
              for i, lay in enumerate(model.layers))
    assert math.isclose(float(model.regularization()), reg, rel_tol=1e-9)
    # gradcheck's loss ignores the penalty, so check W's gradient carries 2*l2*W.
    model.forward(x)
    model.backward(backend64.zeros((5, 2)))
    W = gn.to_numpy(model.layers[0].params["W"])
    np.testing.assert_allclose(gn.to_numpy(model.layers[0].grads["W"]), 0.2 * W, atol=1e-12)
    assert gn.gradcheck(model, x, y, loss="mse").ok


def test_initialisers(backend):
    fan_in, fan_out = 400, 300
    stats = {}
    for name in ("he", "xavier", "glorot", "small", "xavier_normal"):
        W = gn.to_numpy(gn.Dense(fan_in, fan_out, init=name).build(backend).params["W"])
        stats[name] = W.std()
        assert abs(W.mean()) < 0.01 * max(W.std(), 1e-3) * 10
    assert math.isclose(stats["he"], math.sqrt(2 / fan_in), rel_tol=0.05)
    assert math.isclose(stats["xavier"], math.sqrt(2 / (fan_in + fan_out)), rel_tol=0.05)
    assert math.isclose(stats["xavier_normal"], math.sqrt(2 / (fan_in + fan_out)), rel_tol=0.05)
    assert math.isclose(stats["small"], 0.01, rel_tol=0.05)
    zeros = gn.Dense(3, 2, init="zeros").build(backend)
    assert not np.any(gn.to_numpy(zeros.params["W"]))
    assert not np.any(gn.to_numpy(zeros.params["b"]))


def test_default_init_depends_on_activation():
    assert gn.Dense(2, 2, activation="relu").init == "he"
    assert gn.Dense(2, 2, activation="tanh").init == "xavier"
    with pytest.raises(ValueError, match="unknown initialiser 'orthogonal'.*he"):
        gn.Dense(2, 2, init="orthogonal")


def test_seeded_initialisation_is_reproducible(backend_name):
    from conftest import make_backend

    a = gn.Dense(5, 4).build(make_backend(backend_name, seed=3))
    b = gn.Dense(5, 4).build(make_backend(backend_name, seed=3))
    np.testing.assert_array_equal(gn.to_numpy(a.params["W"]), gn.to_numpy(b.params["W"]))


def test_dropout(backend, rng):
    layer = gn.Dropout(0.25).build(backend)
    x = backend.asarray(np.ones((200, 50), dtype=np.float32))
    assert layer.forward(x, training=False) is x
    y = gn.to_numpy(layer.forward(x, training=True))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)  # inverted scaling
    g = gn.to_numpy(layer.backward(backend.asarray(np.full((200, 50), 2.0, np.float32))))
    np.testing.assert_allclose(g, 2.0 * y, rtol=1e-6)  # the same mask flows back
    with pytest.raises(ValueError, match=r"Dropout p: expected a probability in \[0, 1\)"):
        gn.Dropout(1.0)


def test_dense_bad_input_names_layer(backend):
    layer = gn.Dense(3, 2, name="hidden").build(backend)
    with pytest.raises(ValueError, match=r"'hidden'.*expected input of shape \(batch, 3\)"):
        layer.forward(backend.asarray(np.ones((4, 5), np.float32)))
    with pytest.raises(ValueError, match="positive integer"):
        gn.Dense(0, 3)
    with pytest.raises(RuntimeError, match="not built"):
        gn.Dense(2, 2).forward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        gn.Dense(2, 2).build(backend).backward(backend.zeros((1, 2)))


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'swish'; expected one of: .*tanh"):
        gn.Dense(2, 2, activation="swish")
    with pytest.raises(ValueError, match="unknown initialiser 'ones'; expected one of: .*he"):
        gn.Dense(2, 2, init="ones")
    with pytest.raises(ValueError, match="lr: expected a number in"):
        gn.optim.Adam(lr=0)


# ---------------------------------------------------------------------- properties: random stacks
# binary_step has a zero derivative and a jump at 0, where central differences disagree.
SMOOTH = sorted(set(ACTIVATIONS) - {"binary_step", "softmax"})

architectures = st.lists(st.tuples(st.integers(1, 6), st.sampled_from(SMOOTH)), min_size=1,
                         max_size=3)


def _build(backend, n_in, layers, out_act, seed):
    dense, width = [], n_in
    for units, act in layers:
        dense.append(gn.Dense(width, units, activation=act))
        width = units
    dense.append(gn.Dense(width, 3, activation=out_act))
    model = gn.Sequential(dense, device=backend, seed=seed)
    # Zero biases put a unit fed by a dead relu exactly on the next kink (z == 0), where
    # no derivative exists; random biases test the generic case.
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:
        b = layer.params["b"]
        b[...] = model.backend.asarray(rng.uniform(-0.5, 0.5, tuple(b.shape)))
    return model


@settings(max_examples=40, deadline=None)
@given(n_in=st.integers(1, 5), layers=architectures, batch=st.integers(1, 6),
       out_act=st.sampled_from(["softmax", "sigmoid", None]), seed=st.integers(0, 2**16))
def test_random_networks_pass_gradcheck(n_in, layers, batch, out_act, seed):
    rng = np.random.default_rng(seed)
    model = _build(gn.get_backend("cpu", dtype="float64"), n_in, layers, out_act, seed)
    x = rng.uniform(-2, 2, (batch, n_in))
    # A relu kink inside the +-1e-6 difference has probability ~1e-5 per unit: ignored.
    result = gn.gradcheck(model, x, eps=1e-6, rtol=1e-4, atol=1e-7)
    assert result.ok, result


@pytest.mark.parametrize("other", ["array_api_strict", pytest.param("cupy",
                                                                     marks=pytest.mark.gpu)])
@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(1, 5), layers=architectures, batch=st.integers(1, 9),
       out_act=st.sampled_from(["softmax", "sigmoid", None]), seed=st.integers(0, 2**16))
def test_forward_and_backward_agree_across_backends(other, n_in, layers, batch, out_act, seed):
    from conftest import make_backend

    rng = np.random.default_rng(seed)
    ref = _build(gn.get_backend("cpu", dtype="float64"), n_in, layers, out_act, seed)
    alt = _build(make_backend(other, dtype="float64"), n_in, layers, out_act, seed)
    for p, q in zip(ref.parameters(), alt.parameters()):
        q[...] = alt.backend.asarray(gn.to_numpy(p))
    x = rng.uniform(-2, 2, (batch, n_in))
    g = rng.standard_normal((batch, 3))
    np.testing.assert_allclose(gn.to_numpy(alt.forward(x)), gn.to_numpy(ref.forward(x)),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gn.to_numpy(alt.backward(alt.backend.asarray(g))),
                               gn.to_numpy(ref.backward(ref.backend.asarray(g))),
                               rtol=1e-9, atol=1e-12)
    for a, b in zip(alt.gradients(), ref.gradients()):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), rtol=1e-9, atol=1e-12)


def test_dense_refuses_an_absurd_penalty():
    with pytest.raises(ValueError, match="kernel_l2"):
        gn.Dense(3, 1, kernel_l2=1e300)
