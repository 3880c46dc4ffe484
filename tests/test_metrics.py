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


@pytest.mark.parametrize("name,score", [
    ("precision", lambda m, y, p, w, multi: m.precision_score(
        y, p.argmax(1) if multi else p[:, 0] >= 0.5, average="macro" if multi else "binary",
        sample_weight=w, zero_division=0)),
    ("recall", lambda m, y, p, w, multi: m.recall_score(
        y, p.argmax(1) if multi else p[:, 0] >= 0.5, average="macro" if multi else "binary",
        sample_weight=w, zero_division=0)),
    ("f1", lambda m, y, p, w, multi: m.f1_score(
        y, p.argmax(1) if multi else p[:, 0] >= 0.5, average="macro" if multi else "binary",
        sample_weight=w, zero_division=0)),
])
@pytest.mark.parametrize("multi", [False, True], ids=["binary", "multiclass"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_precision_recall_f1_equal_scikit_learns(backend, name, score, multi, weighted):
    """Binary: of the positive class; multiclass: the macro mean over classes."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4 if multi else 2, 80)
    p = rng.uniform(size=(80, 4 if multi else 1))
    p[: 40, 0] += y[:40] == 0  # better than chance, not perfect
    w = rng.uniform(0.0, 2.0, 80) if weighted else None
    got = gn.metrics.compute(name, y, backend.asarray(p.astype(np.float32)),
                             sample_weight=w)
    assert got == pytest.approx(score(metrics, y, p.astype(np.float32), w, multi), abs=1e-5)


@pytest.mark.parametrize("multi", [False, True], ids=["binary", "multiclass"])
def test_auc_is_scikit_learns_within_its_thresholds(backend, multi):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3 if multi else 2, 400)
    if multi:
        logits = rng.normal(size=(400, 3)) + 1.5 * np.eye(3)[y]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        exact = metrics.roc_auc_score(y, p, multi_class="ovr", average="macro")
    else:
        p = 1 / (1 + np.exp(-(rng.normal(size=400) + 1.5 * (2 * y - 1))))[:, None]
        exact = metrics.roc_auc_score(y, p[:, 0])
    got = gn.metrics.compute("auc", y, backend.asarray(p.astype(np.float32)))
    assert got == pytest.approx(exact, abs=5e-3)


def test_metrics_of_counts_accumulate_over_batches_and_validation_in_fit():
    """Logged per epoch from counts summed over the steps (no host read per step):
    evaluate, fit's training figures at batch_size=N and its validation agree."""
    metrics = pytest.importorskip("sklearn.metrics")
    X, y = gn.data.make_moons(300, noise=0.3, seed=0)
    model = gn.Sequential([gn.Dense(2, 16, activation="tanh"),
                           gn.Dense(16, 1, activation="sigmoid")], device="cpu", seed=0)
    names = ["accuracy", "precision", "recall", "f1", "auc"]
    hist = model.fit(X, y, loss="bce", epochs=3, batch_size=32, metrics=names, verbose=0,
                     validation_data=(X, y))
    assert set(names) | {f"val_{n}" for n in names} <= set(hist.history)
    scores = model.evaluate(X, y)
    p = gn.to_numpy(model.predict(X))[:, 0]
    assert scores["f1"] == pytest.approx(metrics.f1_score(y, p >= 0.5), abs=1e-6)
    assert scores["auc"] == pytest.approx(metrics.roc_auc_score(y, p), abs=5e-3)
    assert hist.history["val_f1"][-1] == pytest.approx(scores["f1"], abs=1e-6)


def test_auc_of_a_multiclass_fit_is_one_vs_rest():
    X, y = gn.data.make_moons(200, seed=1)
    model = gn.Sequential([gn.Dense(2, 8, activation="tanh"),
                           gn.Dense(8, 2, activation="softmax")], device="cpu", seed=0)
    hist = model.fit(X, y, loss="cross_entropy", epochs=2, metrics=["auc", "f1"], verbose=0)
    assert 0 <= hist.history["auc"][-1] <= 1 and 0 <= hist.history["f1"][-1] <= 1
