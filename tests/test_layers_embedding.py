"""``Embedding`` and the scatter-add its gradient needs: PyTorch's ``embedding`` as the
oracle, every ``scatter_add_rows`` (generic one-hot, NumPy's sort-and-reduce, CuPy's
``cupyx.scatter_add`` on the CuPy stand-in) against the generic one, indices refused by
name before anything changes, float inputs from the model's pipeline, learning, files,
devices and ONNX."""

from __future__ import annotations

import sys

import fake_cupy
import numpy as np
import pytest
from conftest import make_backend, parity_tolerance
from layer_checks import (
    moves_between_backends,
    onnx_matches_predict,
    save_and_load,
    torch_or_skip,
)

import gpunn as gn
from gpunn.backend import Backend


@pytest.mark.parametrize("shape", [(7,), (4, 3)], ids=["batch", "batch-k"])
def test_lookup_and_table_gradient_match_pytorch(shape, backend64):
    torch = torch_or_skip()
    layer = gn.Embedding(5, 3).build(backend64)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 5, shape)
    idx.flat[:3] = 2  # repeated indices: their gradients add up
    y = layer.forward(backend64.asarray(idx), training=True)
    assert tuple(y.shape) == shape + (3,)
    g = rng.standard_normal(shape + (3,))
    gx = layer.backward(backend64.asarray(g))
    assert tuple(gx.shape) == shape and not np.any(gn.to_numpy(gx))
    Wt = torch.tensor(gn.to_numpy(layer.params["W"]), requires_grad=True)
    yt = torch.nn.functional.embedding(torch.tensor(idx), Wt)
    yt.backward(torch.tensor(g))
    np.testing.assert_array_equal(gn.to_numpy(y), yt.detach().numpy())
    np.testing.assert_allclose(gn.to_numpy(layer.grads["W"]), Wt.grad.numpy(), rtol=1e-12,
                               atol=1e-14)


def _scatter_case(rows, m, dim, dtype, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, rows, m)
    idx[: m // 2] = idx[:1]  # many repeats of one row
    return (rng.standard_normal((rows, dim)).astype(dtype), idx,
            rng.standard_normal((m, dim)).astype(dtype))


def _reference(target, idx, values):
    out = target.astype(np.float64)
    np.add.at(out, idx, values.astype(np.float64))
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,m,dim", [(5, 12, 3), (1000, 64, 8), (3, 400, 2), (4, 0, 2)])
def test_numpy_scatter_add_matches_the_generic_one(rows, m, dim, dtype):
    be = gn.get_backend("cpu", dtype=dtype)
    target, idx, values = _scatter_case(rows, m, dim, dtype)
    generic = Backend.scatter_add_rows(be, be.asarray(target.copy()), idx, values)
    fast = be.scatter_add_rows(target.copy(), idx, values)
    assert fast.dtype == np.dtype(dtype) and fast.shape == (rows, dim)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else parity_tolerance(dtype)
    np.testing.assert_allclose(fast, np.asarray(generic), **tol)
    np.testing.assert_allclose(fast, _reference(target, idx, values), **tol)
    into = target.copy()
    assert be.scatter_add_rows(into, idx, values) is into  # NumPy writes in place


def test_the_generic_scatter_add_runs_on_array_api_strict():
    strict = make_backend("array_api_strict", dtype="float64")
    target, idx, values = _scatter_case(6, 20, 3, "float64")
    out = strict.scatter_add_rows(strict.asarray(target), strict.asarray(idx),
                                  strict.asarray(values))
    np.testing.assert_allclose(gn.to_numpy(out), _reference(target, idx, values), rtol=1e-12)


@pytest.fixture
def fake(monkeypatch):
    """The CuPy stand-in, with ``cupyx.scatter_add`` (NumPy's unbuffered add) recording its
    calls."""
    with fake_cupy.installed(monkeypatch) as state:
        calls = []

        def scatter_add(a, slices, value):
            fake_cupy._check([a, slices, value])
            calls.append((a.dtype, a._dev))
            np.add.at(a.view(np.ndarray), fake_cupy._unwrap(slices), fake_cupy._unwrap(value))

        monkeypatch.setattr(sys.modules["cupyx"], "scatter_add", scatter_add, raising=False)
        state.scatter_calls = calls
        yield state


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_cupy_scatter_add_matches_the_generic_one(fake, dtype):
    from gpunn.backend.cupy_backend import CupyBackend

    be = CupyBackend(1, dtype=dtype)
    target, idx, values = _scatter_case(7, 30, 4, dtype)
    with be.context():
        t, i, v = be.asarray(target), be.asarray(idx), be.asarray(values)
        generic = Backend.scatter_add_rows(be, be.asarray(target), i, v)
        out = be.scatter_add_rows(t, i, v)
    assert out._dev == 1 and out.dtype == np.dtype(dtype)
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == "float16" else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gn.to_numpy(out), gn.to_numpy(generic), **tol)
    # cupyx.scatter_add for float32/float64; float16 falls back to the generic version.
    assert fake.scatter_calls == ([] if dtype == "float16" else [(np.dtype(dtype), 1)])


def test_an_embedding_model_trains_on_the_cupy_stand_in(fake):
    X, y = _sequences(200)
    model = gn.Sequential([gn.Embedding(10, 4), gn.Flatten(),
                           gn.Dense(16, 2, activation="softmax")], device="cuda:1", seed=0)
    hist = model.fit(X, y, loss="cross_entropy", epochs=2, batch_size=50, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    assert model.layers[0].params["W"]._dev == 1 and len(fake.scatter_calls) == 8


@pytest.mark.parametrize("bad,match", [
    ([[1, 5]], r"expected integer indices in \[0, 5\), got 5 at position \(0, 1\)"),
    ([[-1, 0]], r"got -1 at position \(0, 0\)"),
    (np.array([[0.0, 2.5]]), r"got 2.5 at position \(0, 1\)"),
    (np.array([[0.0, np.nan]]), r"got nan at position \(0, 1\)"),
    (np.zeros((2, 2, 2), int), r"expected indices of shape \(batch,\) or \(batch, k\)"),
])
def test_bad_indices_are_refused_naming_the_layer_before_anything_changes(bad, match):
    layer = gn.Embedding(5, 3, name="emb").build(gn.get_backend("cpu"))
    layer.forward(np.array([[1, 2]]), training=True)
    layer.backward(np.ones((1, 2, 3), np.float32))
    grads = gn.to_numpy(layer.grads["W"]).copy()
    kept = layer._index
    with pytest.raises(ValueError, match=r"^layer 'emb' \(Embedding\(5, 3\)\): .*" + match):
        layer.forward(np.asarray(bad), training=True)
    assert layer._index is kept
    np.testing.assert_array_equal(gn.to_numpy(layer.grads["W"]), grads)


def test_indices_of_the_wrong_kind_are_refused():
    layer = gn.Embedding(3000, 2, name="emb").build(gn.get_backend("cpu", dtype="float16"))
    with pytest.raises(TypeError, match=r"'emb' .*float16 holds integers exactly only up to "
                                        r"2048, fewer than the 3000 rows"):
        layer.forward(np.array([[1.0, 2.0]], np.float16))
    assert tuple(layer.forward(np.array([[2999, 0]])).shape) == (1, 2, 2)  # ints are fine
    with pytest.raises(TypeError, match="expected integer indices"):
        layer.forward(np.array([[True, False]]))
    for kwargs in (dict(num_embeddings=0, embedding_dim=2), dict(num_embeddings=3,
                                                                 embedding_dim=2.0)):
        with pytest.raises(ValueError, match="Embedding (num_embeddings|embedding_dim)"):
            gn.Embedding(**kwargs)


def test_shapes_are_inferred():
    layer = gn.Embedding(10, 4)
    assert layer.output_shape((3,)) == (3, 4)
    assert layer.output_shape(()) == (4,)
    assert layer.param_shapes() == {"W": (10, 4)}
    model = gn.Sequential([gn.Embedding(10, 4), gn.Flatten(), gn.Dense(12, 2)], device="cpu")
    assert model.output_shape((3,)) == (2,)
    with pytest.raises(ValueError, match=r"expects indices of shape \(batch,\) or \(batch, "
                                         r"k\), the layer before it gives \(batch, 2, 3\)"):
        layer.output_shape((2, 3))


def _sequences(n=400, seed=0):
    """Sequences of 4 tokens out of 10; the class: does token 7 come before token 3?"""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 10, (n, 4))
    first = lambda row, t: list(row).index(t) if t in row else 99  # noqa: E731
    y = np.array([first(r, 7) < first(r, 3) for r in X], dtype=int)
    return X, y


@pytest.mark.slow
def test_an_embedding_first_learns_from_integer_tokens():
    X, y = _sequences()
    model = gn.Sequential([gn.Embedding(10, 8), gn.Flatten(),
                           gn.Dense(32, 32, activation="relu"),
                           gn.Dense(32, 2, activation="softmax")], device="cpu", seed=0)
    hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01), epochs=40,
                     batch_size=32, verbose=0, seed=0)
    assert hist.history["accuracy"][-1] > 0.95
    Xt, yt = _sequences(200, seed=1)
    assert model.evaluate(Xt, yt, metrics=["accuracy"])["accuracy"] > 0.85


def test_gradcheck_checks_the_table():
    model = gn.Sequential([gn.Embedding(6, 3), gn.Flatten(), gn.Dense(6, 2, activation="tanh")],
                          device="cpu", seed=0)
    x = np.array([[0, 5], [5, 5], [2, 1]])
    result = gn.gradcheck(model, x, check_input=False)  # indices have no gradient
    assert result.ok and "embedding_0.W" in result.errors, result


def test_files_devices_and_onnx(tmp_path):
    X, y = _sequences(64)
    model = gn.Sequential([gn.Embedding(10, 4), gn.Flatten(),
                           gn.Dense(16, 2, activation="softmax")], device="cpu", seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    save_and_load(model, X, tmp_path)
    moves_between_backends(model, X, y, loss="cross_entropy")
    onnx_matches_predict(model, X, tmp_path)
    lookup = gn.Sequential([gn.Embedding(10, 3)], device="cpu", seed=0)
    assert onnx_matches_predict(lookup, X[:5], tmp_path).shape == (5, 4, 3)
