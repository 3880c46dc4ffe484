"""Property tests: random architectures pass the gradient check, and backends agree."""

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="hypothesis not installed")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gpunn as gn
from gpunn.activations import ACTIVATIONS

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
