"""Metrics: the functions, and what fit logs (training and validation each keep their own
accumulators and per-dataset preparation)."""

from __future__ import annotations

import numpy as np
import pytest

import gpunn as gn


def _linear(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)


def test_training_r2_is_that_of_the_training_data_whatever_the_validation_data(backend):
    """Validation's targets (10x larger here) must not change the training R²: each phase
    prepares its own total sum of squares. With a tiny learning rate the weights barely
    move, so the logged R² equals r2_score of the final model on the training data."""
    X, y = _linear(200, 0)
    Xv, yv = _linear(100, 1)
    model = gn.Sequential([gn.Dense(3, 1)], device=backend, seed=0)
    hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e-6), epochs=3,
                     metrics=["r2", "mse", "mae"], validation_data=(Xv, 10 * yv),
                     verbose=0)
    pred = gn.to_numpy(model.predict(X))
    for epoch in range(3):
        assert hist.history["r2"][epoch] == pytest.approx(gn.metrics.r2_score(y, pred),
                                                          abs=1e-3)
    val_pred = gn.to_numpy(model.predict(Xv))
    assert hist.history["val_r2"][-1] == pytest.approx(
        gn.metrics.r2_score(10 * yv, val_pred), abs=1e-4)
    assert hist.history["mse"][-1] == pytest.approx(
        gn.metrics.mean_squared_error(y, pred), rel=1e-3)


def test_evaluate_between_fits_leaves_the_next_fit_s_metrics_alone():
    X, y = _linear(120, 2)
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    opt = gn.optim.SGD(lr=1e-6)
    model.fit(X, y, loss="mse", optimizer=opt, epochs=1, metrics=["r2"], verbose=0)
    model.evaluate(X, 100 * y)
    hist = model.fit(X, y, loss="mse", optimizer=opt, epochs=1, metrics=["r2"], verbose=0)
    pred = gn.to_numpy(model.predict(X))
    assert hist.history["r2"][0] == pytest.approx(gn.metrics.r2_score(y, pred), abs=1e-3)


def test_a_metric_object_holds_no_dataset_state():
    """What a dataset prepares for a metric is returned to the phase that owns it."""
    metric = gn.metrics.get("r2")
    before = dict(vars(metric))
    from array_api_compat import numpy as xp

    prepared = metric.prepare(xp, np.array([[1.0], [2.0], [3.0]]))
    assert vars(metric) == before
    total = metric.batch(xp, np.array([[1.0], [2.0], [4.0]]), np.array([[1.0], [2.0], [3.0]]))
    assert metric.result(float(total), 3, prepared) == pytest.approx(0.5)


def test_the_loss_keeps_nothing_of_a_fit_between_phases(backend):
    """The training loop takes the loss's value, gradient and output as returned values;
    the loss object itself is left as it was."""
    X, y = _linear(64, 3)
    loss = gn.losses.get("mse")
    model = gn.Sequential([gn.Dense(3, 1)], device=backend, seed=0)
    model.fit(X, y, loss=loss, epochs=1, validation_data=(X, y), verbose=0)
    model.evaluate(X, y)
    assert loss.output is None


def test_weighted_metric_functions_equal_scikit_learns(backend):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    y, p = rng.normal(size=(60, 2)), rng.normal(size=(60, 2))
    w = rng.uniform(0.0, 2.0, 60)
    w[:5] = 0.0
    pd = backend.asarray(p)
    assert gn.metrics.mean_squared_error(y, pd, sample_weight=w) == pytest.approx(
        metrics.mean_squared_error(y, p, sample_weight=w), rel=1e-5)
    assert gn.metrics.mean_absolute_error(y, pd, sample_weight=w) == pytest.approx(
        metrics.mean_absolute_error(y, p, sample_weight=w), rel=1e-5)
    # One output: gpunn's R² (pooled over outputs) is scikit-learn's.
    assert gn.metrics.r2_score(y[:, 0], backend.asarray(p[:, 0]), sample_weight=w) == \
        pytest.approx(metrics.r2_score(y[:, 0], p[:, 0], sample_weight=w), rel=1e-5)
    labels, scores = rng.integers(0, 3, 60), rng.uniform(size=(60, 3))
    assert gn.metrics.accuracy(labels, backend.asarray(scores), sample_weight=w) == \
        pytest.approx(metrics.accuracy_score(labels, scores.argmax(axis=1),
                                             sample_weight=w), rel=1e-6)


@pytest.mark.parametrize("weights,match", [
    (np.ones(3), r"sample_weight: expected shape \(4,\)"),
    ([1.0, -1.0, 1.0, 1.0], "sample_weight: weights must be >= 0"),
    ([1.0, np.inf, 1.0, 1.0], "sample_weight: contains NaN or Inf"),
    (np.zeros(4), "sample_weight: all weights are zero"),
])
def test_bad_sample_weights_name_the_argument(weights, match):
    with pytest.raises(ValueError, match=match):
        gn.metrics.mean_squared_error(np.zeros(4), np.ones(4), sample_weight=weights)


def test_r2_of_constant_targets_is_defined_as_scikit_learns():
    y = np.full(6, 3.0)
    assert gn.metrics.r2_score(y, y) == 1.0  # perfect
    assert gn.metrics.r2_score(y, y + np.arange(6)) == 0.0  # imperfect: no better than the mean
    model = gn.Sequential([gn.Dense(2, 1)], device="cpu", seed=0)
    X = np.random.default_rng(0).standard_normal((6, 2))
    hist = model.fit(X, y, loss="mse", epochs=2, metrics=["r2"], verbose=0,
                     validation_data=(X, y))
    assert all(np.isfinite(hist.history["r2"])) and all(np.isfinite(hist.history["val_r2"]))
