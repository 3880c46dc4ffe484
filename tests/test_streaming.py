"""Datasets that stay in host memory and stream to the device batch by batch."""

import numpy as np
import pytest

import gpunn as gn


def _model(backend):
    return gn.Sequential([gn.Dense(2, 16, activation="relu"), gn.Dropout(0.1),
                          gn.Dense(16, 3, activation="softmax")], device=backend, seed=0)


def test_streamed_training_equals_device_training(backend):
    X, y = gn.data.make_spirals(300, classes=3, seed=0)
    Xv, yv = X[:50], y[:50]
    results = []
    for device_data in (True, False):
        model = _model(backend)
        hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
                         epochs=3, batch_size=32, validation_data=(Xv, yv), seed=4,
                         verbose=0, device_data=device_data)
        results.append((hist.history, [gn.to_numpy(p).copy() for p in model.parameters()]))
    (h_dev, p_dev), (h_str, p_str) = results
    for key in h_dev:
        np.testing.assert_allclose(h_str[key], h_dev[key], rtol=1e-6)
    for a, b in zip(p_dev, p_str):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_placement_follows_free_memory(backend, monkeypatch):
    X, y = gn.data.make_spirals(90, classes=3, seed=1)
    model = _model(backend)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    expected = gn.to_numpy(model.predict(X))
    seen = []

    def tiny_device(nbytes):
        seen.append(nbytes)
        return False

    monkeypatch.setattr(model.backend, "fits_on_device", tiny_device)
    streamed = model.predict(X, batch_size=16)
    # A NumPy array is already "on the device" of the NumPy backend: nothing to decide.
    assert seen == ([] if model.backend.owns(X) else [X.nbytes])
    assert model.backend.owns(streamed)
    np.testing.assert_allclose(gn.to_numpy(streamed), expected, rtol=1e-6)
    assert model.evaluate(X, y)["loss"] == pytest.approx(
        model.evaluate(X, y, batch_size=7)["loss"], rel=1e-5)
    # Data already on the device never goes back to the host.
    seen.clear()
    model.predict(model.backend.asarray(X))
    assert seen == []


def test_device_data_must_be_bool_or_none():
    model = _model("cpu")
    with pytest.raises(ValueError, match="device_data: expected None, True or False"):
        model.fit(np.zeros((4, 2)), np.zeros(4, int), loss="cross_entropy",
                  device_data="yes", verbose=0)


def test_streamed_regression_metrics_equal_device_ones(backend):
    """Metrics that look at the whole target (R²) see it in host memory when streaming."""
    X, y = gn.data.make_linear(200, coef=(1.0, -2.0, 0.5), seed=2)
    results = []
    for device_data in (True, False):
        model = gn.Sequential([gn.Dense(3, 8, activation="tanh"), gn.Dense(8, 1)],
                              device=backend, seed=0)
        hist = model.fit(X, y, loss="mse", metrics=["mae", "r2"], epochs=2, batch_size=50,
                         validation_data=(X[:40], y[:40]), shuffle=False, verbose=0,
                         device_data=device_data)
        results.append(hist.history)
    for key in ("r2", "val_r2", "mae", "val_mae"):
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-5)
