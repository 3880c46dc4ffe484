"""The Numba passes of a CPU training step (gpunn/backend/numba_kernels.py) against the
NumPy versions they replace: the softmax cross-entropy head from labels, and ReLU's
derivative with the bias gradient. Skipped, saying why, where Numba is not installed."""

from __future__ import annotations

import numpy as np
import pytest

import gpunn as gn

pytest.importorskip("numba", reason="numba not installed (pip install gpunn[numba])")

from gpunn.backend import numba_kernels  # noqa: E402
from gpunn.backend.numpy_backend import NumpyBackend  # noqa: E402


def _backends(monkeypatch, dtype):
    """The same backend with the Numba passes on and off."""
    on, off = NumpyBackend(dtype=dtype), NumpyBackend(dtype=dtype)
    on._numba, off._numba = "1", "0"
    return on, off


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 10), (513, 2)])
def test_softmax_head_matches_numpy(monkeypatch, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    on, off = _backends(monkeypatch, dtype)
    fused, plain = on.softmax_cross_entropy(z, labels), off.softmax_cross_entropy(z, labels)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(fused, plain):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_softmax_head_refuses_a_label_out_of_range_as_numpy_does(monkeypatch):
    on, _ = _backends(monkeypatch, "float32")
    z = np.zeros((4, 3), np.float32)
    assert numba_kernels.softmax_xent_labels(z, np.array([0, 1, 3, 2])) is None
    with pytest.raises(IndexError):
        on.softmax_cross_entropy(z, np.array([0, 1, 3, 2]))


def test_softmax_head_keeps_non_finite_logits_non_finite(monkeypatch):
    on, off = _backends(monkeypatch, "float32")
    z = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 0.0]], np.float32)
    for be in (on, off):
        value, prob, grad = be.softmax_cross_entropy(z, np.array([0, 1]))
        assert not np.isfinite(value) and not np.isfinite(prob).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (9, 5), (256, 33)])
def test_relu_backward_and_bias_gradient_match_numpy(monkeypatch, dtype, shape):
    rng = np.random.default_rng(shape[1])
    x = rng.standard_normal((shape[0], 4)).astype(dtype)
    W = rng.standard_normal((4, shape[1])).astype(dtype)
    y = np.maximum(rng.standard_normal(shape), 0).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    g[0, 0] = np.nan  # NaN * 0 is NaN in both, wherever it lands
    g_before = g.copy()
    on, off = _backends(monkeypatch, dtype)
    relu = gn.activations.ACTIVATIONS["relu"]
    res = []
    for be in (on, off):
        out = (np.empty((4, shape[1]), dtype), np.empty(shape[1], dtype))
        res.append(be.dense_backward(x, W, y, y, g, relu, {}, True, out=out))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == "float32" else 1e-12,
                                   equal_nan=True)
    np.testing.assert_array_equal(g, g_before)  # the upstream gradient is left as it was


def test_a_network_trains_the_same_with_and_without_the_numba_passes(monkeypatch):
    X, y = gn.data.make_spirals(300, seed=0)
    hist = []
    for flag in ("1", "0"):
        monkeypatch.setenv("GPUNN_NUMBA", flag)
        model = gn.Sequential([gn.Dense(2, 32, activation="relu"),
                               gn.Dense(32, 32, activation="relu"),
                               gn.Dense(32, 3, activation="softmax")], device="cpu",
                              dtype="float64", seed=0)
        hist.append(model.fit(X, y, loss="cross_entropy", epochs=3, batch_size=32,
                              verbose=0, seed=0).history["loss"])
        assert model.backend.numba_setting() == flag
    np.testing.assert_allclose(hist[0], hist[1], rtol=1e-10)


@pytest.mark.parametrize("name", ["relu", "identity"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (200, 6), (33, 130)])
def test_bias_and_relu_in_one_pass_match_numpy(monkeypatch, name, dtype, shape):
    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal((shape[0], 5)).astype(dtype)
    W = rng.standard_normal((5, shape[1])).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    x[0, 0] = np.nan  # a NaN row stays NaN through ReLU, as np.maximum keeps it
    if shape[0] > 1:
        x[1, :] = -np.inf  # -inf after ReLU is 0, as in np.maximum
        W[:, :] = np.abs(W)
    on, off = _backends(monkeypatch, dtype)
    act = gn.activations.ACTIVATIONS[name]
    (z1, y1), (z0, y0) = (be.bias_activation(x, W, b, act, {}) for be in (on, off))
    np.testing.assert_allclose(y1, y0, rtol=1e-6 if dtype == "float32" else 1e-13,
                               equal_nan=True)
    assert z1 is y1


def test_a_wide_softmax_head_stays_with_numpy():
    """Numba's exponentials are scalar: past HEAD_MAX_CLASSES classes NumPy's vectorised
    head is faster (bench/numba_policy.py), so the kernel declines."""
    rng = np.random.default_rng(0)
    narrow = rng.standard_normal((8, numba_kernels.HEAD_MAX_CLASSES)).astype(np.float32)
    wide = rng.standard_normal((8, numba_kernels.HEAD_MAX_CLASSES + 1)).astype(np.float32)
    labels = np.zeros(8, np.int64)
    assert numba_kernels.softmax_xent_labels(narrow, labels) is not None
    assert numba_kernels.softmax_xent_labels(wide, labels) is None
