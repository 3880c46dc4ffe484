"""fit's arguments as a Keras user expects them: loss and optimiser given once (a later fit,
or a fit of a loaded model, continues with them), and defaults chosen from the model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpunn as gn


def _net(out=1, activation=None, seed=0, device="cpu"):
    return gn.Sequential([gn.Dense(3, 8, activation="tanh"),
                          gn.Dense(8, out, activation=activation)], device=device, seed=seed)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5])


def test_a_second_fit_continues_with_the_first_fits_loss_and_optimiser(backend):
    """Two fits of 2 epochs are one fit of 4: same Adam object, moments and step count."""
    X, y = _data()
    a, b = _net(device=backend), _net(device=backend)
    a.fit(X, y, loss="huber", optimizer=gn.optim.Adam(lr=0.01), epochs=2, batch_size=16,
          seed=0, verbose=0)
    loss, opt, t = a.loss, a.optimizer, a.optimizer.t
    a.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert a.loss is loss and a.optimizer is opt and opt.t == 2 * t == 16
    assert a.optimizer.lr == 0.01
    b.fit(X, y, loss="huber", optimizer=gn.optim.Adam(lr=0.01), epochs=4, batch_size=16,
          seed=0, verbose=0)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(gn.to_numpy(pa), gn.to_numpy(pb))


def test_a_second_fit_keeps_the_metrics_with_the_loss():
    X, y = _data()
    model = _net()
    model.fit(X, y, loss="mse", metrics=["r2"], epochs=1, verbose=0)
    assert list(model.fit(X, y, epochs=1, verbose=0).history) == ["loss", "r2"]
    # A new loss brings its own default metrics.
    assert list(model.fit(X, y, loss="mae", epochs=1, verbose=0).history) == ["loss", "mae"]


def test_a_new_loss_alone_keeps_the_optimiser():
    X, y = _data()
    model = _net()
    model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=0.01, momentum=0.9), epochs=1,
              verbose=0)
    opt = model.optimizer
    model.fit(X, y, loss="huber", epochs=1, verbose=0)
    assert model.optimizer is opt and isinstance(model.loss, gn.losses.Huber)
    # A name asks for a fresh optimiser, as before.
    model.fit(X, y, optimizer="sgd", epochs=1, verbose=0)
    assert model.optimizer is not opt and model.optimizer.t == 2


def test_a_loaded_model_continues_with_its_loss_and_optimiser(tmp_path):
    X, y = _data()
    model = _net()
    model.fit(X, y, loss="huber", optimizer=gn.optim.RMSprop(lr=0.003), epochs=2,
              batch_size=16, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = gn.load(tmp_path / "m.npz", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no default chosen, so nothing to warn about
        loaded.fit(X, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert isinstance(loaded.loss, gn.losses.Huber)
    assert isinstance(loaded.optimizer, gn.optim.RMSprop)
    assert loaded.optimizer.lr == 0.003 and loaded.optimizer.t == 12
    # The same step as the original model continuing with its own optimiser state.
    model.fit(X, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for pa, pb in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_allclose(gn.to_numpy(pb), gn.to_numpy(pa), rtol=1e-6)


@pytest.mark.parametrize("activation,outputs,labels,expected", [
    ("softmax", 3, True, "categorical_crossentropy"),
    ("sigmoid", 1, True, "binary_crossentropy"),
    (None, 1, False, "mse"),
    ("linear", 1, False, "mse"),
])
def test_a_first_fit_without_loss_takes_it_from_the_output_activation(
        activation, outputs, labels, expected):
    X, y = _data()
    if labels:
        y = np.digitize(y, [-1.0, 1.0]) if outputs == 3 else (y > 0).astype(int)
    model = _net(outputs, activation)
    assert gn.training.output_activation(model) == (activation or "identity")
    with pytest.warns(UserWarning, match=rf"fit: no loss given; using '{expected}' for the "
                                         rf"model's {activation or 'identity'} output"):
        model.fit(X, y, epochs=1, verbose=0)
    assert model.loss.name == expected


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_no_loss_follows_from_other_outputs(activation):
    X, y = _data()
    model = _net(1, activation)
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=rf"loss: .*{activation}.* pass loss="):
        model.fit(X, y, epochs=1, verbose=0)
    assert model.loss is None and model.optimizer is None
    for p, q in zip(before, model.parameters()):
        np.testing.assert_array_equal(p, gn.to_numpy(q))


def test_a_first_fit_without_optimiser_uses_adam_with_its_defaults():
    X, y = _data()
    model = _net()
    model.fit(X, y, loss="mse", epochs=1, verbose=0)
    assert type(model.optimizer) is gn.optim.Adam and model.optimizer.lr == 0.001


def test_resume_without_loss_takes_the_checkpoints(tmp_path):
    X, y = _data()
    first = _net()
    first.fit(X, y, loss="huber", optimizer=gn.optim.Adam(lr=0.01), epochs=2, seed=3,
              verbose=0, callbacks=[gn.callbacks.ModelCheckpoint(str(tmp_path / "c.npz"))])
    resumed = _net(seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hist = resumed.fit(X, y, epochs=3, verbose=0, resume_from=tmp_path / "c.npz")
    assert isinstance(resumed.loss, gn.losses.Huber) and hist.epoch == [1, 2, 3]


# ---------------------------------------------------------------------- sample weights
def _regression64(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.stack([X @ np.array([1.0, -2.0, 0.5]), X[:, 0] * X[:, 1]], axis=1)


def _mlp64(backend, outputs=2, activation=None):
    return gn.Sequential([gn.Dense(3, 6, activation="tanh"),
                          gn.Dense(6, outputs, activation=activation)],
                         device=backend, dtype="float64", seed=4)


def _fit_params(model, X, y, **kwargs):
    kwargs = {"loss": "mse", "epochs": 5, "verbose": 0, "seed": 1, **kwargs}
    hist = model.fit(X, y, optimizer=gn.optim.SGD(lr=0.1), **kwargs)
    return hist, [gn.to_numpy(p).copy() for p in model.parameters()]


@pytest.mark.parametrize("device_data", [True, False])
def test_rows_of_weight_zero_train_as_if_absent(backend_name, device_data):
    """Full batch, shuffled: weights stay with their rows, and rows of weight 0 (with
    garbage targets) change nothing."""
    from conftest import make_backend

    backend = make_backend(backend_name, dtype="float64")
    X, y = _regression64()
    keep = np.arange(len(X)) % 3 != 0
    garbage = np.where(keep[:, None], y, 1e6)
    a, pa = _fit_params(_mlp64(backend), X, garbage, batch_size=len(X),
                        sample_weight=keep.astype(float), device_data=device_data)
    b, pb = _fit_params(_mlp64(backend), X[keep], y[keep], batch_size=len(X),
                        device_data=device_data)
    for p, q in zip(pa, pb):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(a.history["mae"], b.history["mae"], rtol=1e-10)


def test_a_weight_of_two_is_a_row_twice(backend64):
    X, y = _regression64(seed=1)
    w = np.where(np.arange(len(X)) % 4 == 0, 2.0, 1.0)
    twice = np.concatenate([np.arange(len(X)), np.flatnonzero(w == 2.0)])
    a, pa = _fit_params(_mlp64(backend64), X, y, batch_size=len(X), sample_weight=w)
    b, pb = _fit_params(_mlp64(backend64), X[twice], y[twice], batch_size=len(twice))
    for p, q in zip(pa, pb):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-10)


def test_a_batch_of_zero_weights_counts_for_nothing(backend64):
    """Its loss and gradient are 0, not NaN; the epoch's figures are over the others."""
    X, y = _regression64()
    w = np.ones(len(X))
    w[:8] = 0.0
    a, pa = _fit_params(_mlp64(backend64), X, y, batch_size=8, shuffle=False,
                        sample_weight=w)
    b, pb = _fit_params(_mlp64(backend64), X[8:], y[8:], batch_size=8, shuffle=False)
    for p, q in zip(pa, pb):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-10)


def test_class_weight_lifts_a_rare_class(backend):
    """95/5: without weights the rare class is mostly missed; balanced weights find it."""
    rng = np.random.default_rng(0)
    n_rare = 20
    X = np.concatenate([rng.normal(0.0, 1.0, (380, 2)), rng.normal(1.2, 1.0, (n_rare, 2))])
    y = np.concatenate([np.zeros(380, int), np.ones(n_rare, int)])
    recall = {}
    for cw in (None, "balanced", {0: 1.0, 1: 19.0}):
        model = gn.Sequential([gn.Dense(2, 8, activation="tanh"),
                               gn.Dense(8, 2, activation="softmax")], device=backend, seed=0)
        model.fit(X, y, loss="categorical_crossentropy", optimizer=gn.optim.Adam(lr=0.02),
                  epochs=30, batch_size=64, verbose=0, seed=0, class_weight=cw)
        pred = gn.to_numpy(model.predict(X)).argmax(axis=1)
        recall[str(cw)] = float(np.mean(pred[y == 1] == 1))
    assert recall["None"] < 0.3
    assert recall["balanced"] > 0.6 and recall["{0: 1.0, 1: 19.0}"] > 0.6


def test_weighted_logs_and_evaluate_equal_scikit_learns(backend):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=120)
    w = rng.uniform(0.0, 3.0, 120)
    model = gn.Sequential([gn.Dense(3, 1)], device=backend, seed=0)
    hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e-7), epochs=2,
                     metrics=["r2", "mse", "mae"], sample_weight=w, verbose=0,
                     validation_data=(X[:50], y[:50], w[:50]))
    pred = gn.to_numpy(model.predict(X)).ravel()
    want = {"r2": metrics.r2_score(y, pred, sample_weight=w),
            "mse": metrics.mean_squared_error(y, pred, sample_weight=w),
            "mae": metrics.mean_absolute_error(y, pred, sample_weight=w)}
    for name, value in want.items():
        assert hist.history[name][-1] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    assert hist.history["loss"][-1] == pytest.approx(want["mse"], rel=1e-3)
    got = model.evaluate(X, y, sample_weight=w)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert got["loss"] == pytest.approx(want["mse"], rel=1e-5)
    val = model.evaluate(X[:50], y[:50], sample_weight=w[:50])
    assert hist.history["val_r2"][-1] == pytest.approx(val["r2"], rel=1e-6)
    assert gn.metrics.r2_score(y, pred, sample_weight=w) == pytest.approx(want["r2"],
                                                                         abs=1e-6)


def test_weighted_evaluate_of_a_classifier_equals_scikit_learns():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 50)
    w = rng.uniform(0.0, 2.0, 50)
    model = gn.Sequential([gn.Dense(3, 3, activation="softmax")], device="cpu", seed=0)
    X = rng.normal(size=(50, 3))
    got = model.evaluate(X, y, loss="cross_entropy", sample_weight=w)
    pred = gn.to_numpy(model.predict(X))
    assert got["accuracy"] == pytest.approx(
        metrics.accuracy_score(y, pred.argmax(axis=1), sample_weight=w))
    assert got["loss"] == pytest.approx(
        metrics.log_loss(y, pred, sample_weight=w), rel=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"sample_weight": np.ones(5)}, r"sample_weight: expected shape \(40,\)"),
    ({"sample_weight": np.ones((40, 1))}, r"sample_weight: expected shape \(40,\)"),
    ({"sample_weight": np.r_[np.nan, np.ones(39)]}, "sample_weight: contains NaN"),
    ({"sample_weight": np.r_[-1.0, np.ones(39)]}, "sample_weight: weights must be >= 0"),
    ({"sample_weight": np.zeros(40)}, "sample_weight: all weights are zero"),
    ({"sample_weight": ["a"] * 40}, "sample_weight: expected numbers"),
    ({"class_weight": {0: 1.0}}, "class_weight: needs a classification loss"),
    ({"validation_data": (np.zeros((4, 3)), np.zeros((4, 2)), np.ones(3))},
     r"val_sample_weight: expected shape \(4,\)"),
    ({"validation_data": (np.zeros((4, 3)),)}, "validation_data: expected a pair"),
])
def test_bad_weights_are_refused_before_anything_changes(kwargs, match):
    X, y = _regression64()
    model = _mlp64("cpu")
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(X, y, loss="mse", epochs=1, verbose=0, **kwargs)
    assert model.optimizer is None and model.loss is None
    for p, q in zip(before, model.parameters()):
        np.testing.assert_array_equal(p, gn.to_numpy(q))


@pytest.mark.parametrize("class_weight,match", [
    ({0: 1.0, 3: 2.0}, r"class_weight: unknown class 3 \(this model's classes are 0..2\)"),
    ({0: -1.0}, "class_weight: class 0: expected a finite weight >= 0, got -1.0"),
    ("sometimes", "class_weight: expected a dict {class: weight} or 'balanced'"),
    ({0: 0.0, 1: 0.0, 2: 0.0}, "all weights are zero"),
])
def test_bad_class_weights_name_what_is_wrong(class_weight, match):
    X, _ = _regression64()
    y = np.arange(len(X)) % 3
    model = gn.Sequential([gn.Dense(3, 3, activation="softmax")], device="cpu", seed=0)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0, class_weight=class_weight)
    assert model.optimizer is None


def test_class_weight_multiplies_sample_weight_and_matches_labels_and_one_hot():
    """"balanced" is scikit-learn's n_samples / (n_classes * bincount(y)); one-hot rows
    weigh as their labels; the product with sample_weight is what the loss sees."""
    X, _ = _regression64()
    y = np.r_[np.zeros(30, int), np.ones(10, int)]
    sw = np.linspace(0.5, 1.5, len(X))
    cw = {0: 40 / (2 * 30), 1: 40 / (2 * 10)}
    results = []
    for target, kwargs in [(y, {"class_weight": "balanced", "sample_weight": sw}),
                           (np.eye(2)[y], {"class_weight": "balanced", "sample_weight": sw}),
                           (y, {"sample_weight": sw * np.array([cw[c] for c in y])})]:
        model = gn.Sequential([gn.Dense(3, 2, activation="softmax")], device="cpu",
                              dtype="float64", seed=0)
        hist = model.fit(X, target, loss="cross_entropy", optimizer=gn.optim.SGD(lr=0.1),
                         epochs=2, batch_size=8, verbose=0, seed=0, **kwargs)
        results.append(hist.history["loss"])
    np.testing.assert_allclose(results[0], results[2], rtol=1e-12)
    np.testing.assert_allclose(results[1], results[2], rtol=1e-12)


def test_binary_class_weight_and_the_keys_of_one_sigmoid_output():
    X, _ = _regression64()
    y = (np.arange(len(X)) % 4 == 0).astype(int)
    model = gn.Sequential([gn.Dense(3, 1, activation="sigmoid")], device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"class_weight: unknown class 2 \(this model's "
                                         r"classes are 0..1\)"):
        model.fit(X, y, loss="bce", epochs=1, verbose=0, class_weight={2: 1.0})
    hist = model.fit(X, y, loss="bce", epochs=1, verbose=0, class_weight="balanced")
    assert np.isfinite(hist.history["loss"][0])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("on_divergence", ["skip", "raise"])
def test_weights_with_divergence_handling(on_divergence):
    X, y = _regression64()
    w = np.linspace(0.0, 2.0, len(X))
    model = _mlp64("cpu")
    if on_divergence == "skip":
        y = y.copy()
        y[5] = 1e300  # its batch's loss overflows: that step is skipped
        hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=0.01), epochs=2,
                         batch_size=8, shuffle=False, verbose=0, sample_weight=w,
                         on_divergence="skip")
        assert hist.history["skipped"] == [1.0, 1.0]
        assert np.all(np.isfinite(hist.history["loss"]))
        return
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(gn.TrainingDiverged):
        model.fit(X, y * 1e150, loss="mse", optimizer=gn.optim.SGD(lr=1e10), epochs=2,
                  batch_size=8, verbose=0, sample_weight=w)
    for p, q in zip(before, model.parameters()):
        np.testing.assert_array_equal(p, gn.to_numpy(q))


def test_weights_under_16_bit_training():
    """float16 parameters, float32 weights and loss: weight-0 rows still count for
    nothing (to float16 rounding)."""
    X, y = _regression64()
    keep = np.arange(len(X)) % 2 == 0
    models = [gn.Sequential([gn.Dense(3, 2)], device="cpu", dtype="float16", seed=0)
              for _ in range(2)]
    a = models[0].fit(X, np.where(keep[:, None], y, 1e3), loss="mse", epochs=3,
                      batch_size=len(X), verbose=0, seed=0, sample_weight=keep * 1.0)
    b = models[1].fit(X[keep], y[keep], loss="mse", epochs=3, batch_size=len(X),
                      verbose=0, seed=0)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-2)


def test_ctrl_c_with_weights_and_the_running_loss_callbacks_see():
    """Callbacks' running loss is the weighted mean so far (times the rows); Ctrl-C rolls
    a weighted run back to the end of its last whole epoch."""
    import os
    import signal

    X, y = _regression64()
    w = np.linspace(0.0, 3.0, len(X))
    running = []

    class PressCtrlC(gn.callbacks.Callback):
        def on_batch_end(self, model, batch, rows, loss_sum):
            running.append(float(loss_sum) / rows)
            if model.optimizer.t == 7:
                os.kill(os.getpid(), signal.SIGINT)

    model = _mlp64("cpu")
    hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=0.01), epochs=5,
                     batch_size=8, verbose=0, sample_weight=w, callbacks=[PressCtrlC()])
    assert len(hist.epoch) == 1 and model.optimizer.t == 5  # 5 steps an epoch
    assert running[4] == pytest.approx(hist.history["loss"][0], rel=1e-12)
    assert np.isfinite(model.evaluate(X, y, sample_weight=w)["loss"])


def test_the_roll_back_cadence_is_decided_from_sizes(monkeypatch):
    """Snapshots every epoch on the CPU; where a snapshot must go to host memory from a GPU
    (a big model), less often, by the bytes it copies against an epoch's traffic: the same
    on every rank and run (a timing would differ)."""
    from gpunn.training.recovery import Snapshot

    X, y = gn.data.make_moons(200, seed=0)
    model = gn.Sequential([gn.Dense(2, 64, activation="relu"), gn.Dense(64, 1)],
                          device="cpu", seed=0)
    model.fit(X, y, loss="mse", optimizer=gn.optim.Adam(), epochs=1, verbose=0)
    snap = Snapshot(model, model.optimizer, 1)
    assert snap.epochs_between(10) == 1
    monkeypatch.setattr(model.backend, "library", "cupy")  # a host copy from a "GPU"
    # Adam: the snapshot copies about 3x the parameters' bytes (the flat state's alignment
    # gaps add a little), at 100x the cost; an epoch of 10 steps moves (4 + 2 * 2) x them
    # per step: about ceil(300 / (0.05 * 80)) = 75.
    every = snap.epochs_between(10)
    assert 75 <= every <= 80
    assert snap.epochs_between(100) == -(-every // 10)  # inversely with the epoch's steps
    assert snap.epochs_between(10_000) == 1


# ---------------------------------------------------------------------- the data source
@pytest.mark.parametrize("device_data", [True, False], ids=["gathered", "streamed"])
def test_another_batch_order_is_a_data_source_of_its_own(device_data):
    """fit(batch_source=...) trains on the Batches it returns: one whose order is a fixed
    permutation trains as the pre-permuted rows do in stored order (float64), whichever
    kind (gathered on the device or streamed) it wraps."""
    from gpunn.training import batches

    X, y = _regression64(n=37)
    w = np.linspace(0.5, 2.0, len(X))
    perm = np.random.default_rng(3).permutation(len(X))

    class FixedOrder(batches.Batches):
        def __init__(self, inner):
            super().__init__(inner.backend, inner.X, inner.T, inner.W, inner.batch_size,
                             inner.shuffle)
            self.inner, self.streaming = inner, inner.streaming

        def order(self):
            return perm

        def rows(self, order, size):
            return self.inner.rows(order, size)

    made = []

    def source(data):
        made.append(data)
        return FixedOrder(data)

    hist, params = _fit_params(_mlp64("cpu"), X, y, batch_size=8, device_data=device_data,
                               sample_weight=w, batch_source=source)
    assert made[0].streaming is (not device_data)
    ref, ref_params = _fit_params(_mlp64("cpu"), X[perm], y[perm], batch_size=8,
                                  shuffle=False, sample_weight=w[perm])
    for a, b in zip(params, ref_params):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hist.history["loss"], ref.history["loss"], rtol=1e-12)


def test_a_batch_source_must_make_batches():
    X, y = _regression64()
    model = _mlp64("cpu")
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(TypeError, match="batch_source: expected a function taking the "
                                        "usual data source"):
        model.fit(X, y, loss="mse", epochs=1, verbose=0, batch_source="reversed")
    with pytest.raises(TypeError, match="batch_source: expected it to return a "
                                        r"gpunn.training.batches.Batches, got .*list"):
        model.fit(X, y, loss="mse", epochs=1, verbose=0, batch_source=lambda data: [])
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p, b)
    assert model.optimizer is None


def test_sparse_inputs_stream_as_dense_batches():
    """A SciPy sparse X is a kind of host data: batches are its rows made dense, so fit,
    evaluate and predict equal those on the dense array; a preprocessor (which would
    centre it, making it dense) is refused by name."""
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(96, 7, density=0.2, format="csr", random_state=0, dtype=np.float64)
    y = (np.asarray(X.sum(axis=1)).ravel() > 0.3).astype(np.float64)
    nets = [gn.Sequential.from_architecture(
        [{"input_dim": 7, "output_dim": 5, "activation": "tanh"},
         {"input_dim": 5, "output_dim": 1, "activation": "sigmoid"}], seed=0,
        device="cpu", dtype="float64") for _ in range(2)]
    for net, data in zip(nets, (X, X.toarray())):
        net.fit(data, y, loss="binary_crossentropy", epochs=2, batch_size=16, verbose=0,
                seed=3, validation_data=(data, y))
    np.testing.assert_allclose(gn.to_numpy(nets[0].predict(X)),
                               gn.to_numpy(nets[1].predict(X.toarray())), rtol=1e-12)
    assert nets[0].evaluate(X, y) == pytest.approx(nets[1].evaluate(X.toarray(), y))
    from gpunn.preprocessing import Standardizer

    nets[0].preprocessor = Standardizer().fit(X.toarray())
    with pytest.raises(ValueError, match="X: sparse input cannot go through the model's "
                                         "preprocessor"):
        nets[0].predict(X)


def test_sparse_inputs_are_checked_and_read_in_the_models_dtype_as_dense_ones():
    """Stored values of a sparse X that are finite but beyond the model's dtype are said
    to be so (as for a dense X), not "NaN or Inf"; a 16-bit model, a dtype SciPy's sparse
    matrices do not hold, takes sparse input as it takes the dense form."""
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(40, 6, density=0.3, format="csr", random_state=0, dtype=np.float64)
    y = (np.asarray(X.sum(axis=1)).ravel() > 0.5).astype(np.float64)
    net = gn.Sequential([gn.Dense(6, 1, activation="sigmoid")], device="cpu", seed=0)
    huge = X.copy()
    huge.data[3] = 1e300
    for call in (lambda: net.predict(huge), lambda: net.evaluate(huge, y, loss="bce"),
                 lambda: net.fit(huge, y, loss="bce", epochs=1, verbose=0)):
        with pytest.raises(ValueError, match=r"X: holds values up to 1e\+300, beyond "
                                             r"float32's range"):
            call()
    half = gn.Sequential([gn.Dense(6, 1, activation="sigmoid")], device="cpu", seed=0,
                         dtype="float16")
    np.testing.assert_array_equal(gn.to_numpy(half.predict(X)),
                                  gn.to_numpy(half.predict(X.toarray())))
    half.fit(X, y, loss="bce", epochs=1, verbose=0)
    big = X.copy()
    big.data[0] = 7e4
    with pytest.raises(ValueError, match="beyond float16's range"):
        half.predict(big)
