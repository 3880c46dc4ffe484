"""The model (gpunn.Sequential): fit, predict and evaluate as a user calls them, building
(layers that chain, each used once), forward and backward for one's own loop, moving
between devices, reproducible runs."""

import numpy as np
import pytest

import gpunn as gn


def _moons(n=200, seed=0):
    return gn.data.make_moons(n, noise=0.1, seed=seed)


def test_fit_predict_evaluate_api(backend, capsys):
    X, y = _moons()
    model = gn.Sequential([gn.Dense(2, 16, activation="relu"),
                           gn.Dense(16, 1, activation="sigmoid")], device=backend, seed=0)
    hist = model.fit(X, y, loss="binary_crossentropy", optimizer=gn.optim.Adam(lr=0.01),
                     epochs=3, batch_size=32, validation_data=(X[:50], y[:50]), seed=0,
                     verbose=0)
    assert capsys.readouterr().out == ""  # verbose=0 prints nothing
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 and all(isinstance(x, float) for x in v)
               for v in hist.history.values())
    assert hist.epoch == [1, 2, 3]
    proba = model.predict(X)
    assert backend.owns(proba) and tuple(proba.shape) == (200, 1)
    host = gn.to_numpy(proba)
    assert np.all((host >= 0) & (host <= 1))
    result = model.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"}
    assert result["accuracy"] == pytest.approx(gn.metrics.accuracy(y, host))


def test_verbose_prints_epoch_lines(capsys, moons, binary_classifier):
    X, y = moons
    model = binary_classifier()
    model.fit(X, y, loss="bce", epochs=2, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "loss" in lines[0] and "samples/s" in lines[0]


def test_fit_is_reproducible_with_seed(backend_name):
    from conftest import make_backend

    X, y = _moons(100)
    runs = []
    for _ in range(2):
        model = gn.Sequential([gn.Dense(2, 8, activation="relu"), gn.Dropout(0.2),
                               gn.Dense(8, 1, activation="sigmoid")],
                              device=make_backend(backend_name), seed=1)
        hist = model.fit(X, y, loss="bce", epochs=2, batch_size=16, seed=5, verbose=0)
        runs.append((hist.history["loss"], gn.to_numpy(model.predict(X))))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_same_seed_same_bits_on_cpu(classifier):
    X, y = gn.data.make_spirals(300, seed=1)
    runs = []
    for _ in range(2):
        model = classifier(seed=5)
        model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01), epochs=3,
                  seed=11, verbose=0)
        runs.append(np.concatenate([gn.to_numpy(p).ravel() for p in model.parameters()]))
    assert runs[0].tobytes() == runs[1].tobytes()


def test_accepts_lists_and_other_namespaces(backend):
    X, y = _moons(40)
    model = gn.Sequential([gn.Dense(2, 3, activation="softmax")], device=backend, seed=0)
    model.fit(X.tolist(), y.tolist(), loss="categorical_crossentropy", epochs=1, verbose=0)
    strict = pytest.importorskip("array_api_strict")
    model.fit(strict.asarray(X), strict.asarray(y), loss="categorical_crossentropy",
              epochs=1, verbose=0)
    onehot = np.eye(3, dtype=np.float32)[y]
    assert model.evaluate(X, onehot)["loss"] == pytest.approx(model.evaluate(X, y)["loss"],
                                                              rel=1e-5)


def test_forward_backward_for_own_loop(backend64, rng):
    model = gn.Sequential([gn.Dense(3, 5, activation="tanh"), gn.Dense(5, 2)],
                          device=backend64, seed=0)
    x = rng.standard_normal((4, 3))
    out = model.forward(x)
    assert tuple(out.shape) == (4, 2)
    gx = model.backward(backend64.asarray(np.ones((4, 2))))
    assert tuple(gx.shape) == (4, 3)
    assert len(model.parameters()) == 4 and len(model.gradients()) == 4
    assert model.count_params() == 3 * 5 + 5 + 5 * 2 + 2
    assert gn.gradcheck(model, x).ok


def test_own_training_loop_learns(backend):
    X, y = gn.data.make_linear(256, coef=(1.0, -2.0), seed=0)
    model = gn.Sequential([gn.Dense(2, 1)], device=backend, seed=0)
    loss, opt = gn.losses.get("mse"), gn.optim.SGD(lr=0.1)
    Xd, yd = backend.asarray(X), backend.asarray(y.reshape(-1, 1))
    for _ in range(200):
        loss.forward(model.forward(Xd, training=True), yd)
        model.backward(loss.backward())
        opt.step(model.parameters(), model.gradients())
    np.testing.assert_allclose(gn.to_numpy(model.layers[0].params["W"]).ravel(), [1, -2],
                               atol=1e-3)


def test_from_architecture_and_summary():
    net = gn.Sequential.from_architecture([
        {"input_dim": 2, "output_dim": 25, "activation": "relu"},
        {"input_dim": 25, "output_dim": 1, "activation": "sigmoid", "dropout": 0.1}],
        device="cpu", seed=0)
    assert [type(layer).__name__ for layer in net.layers] == ["Dense", "Dense", "Dropout"]
    assert net.input_dim == 2 and net.output_dim == 1
    text = net.summary(print_fn=None)
    assert "dense_0" in text and f"{net.count_params():,}" in text and "cpu" in text


@pytest.mark.parametrize("build", [
    lambda d: gn.Sequential([d, gn.Tanh(), d], device="cpu"),
    lambda d: gn.Sequential([gn.Dense(4, 4), d, d], device="cpu"),
    lambda d: gn.Sequential([d, gn.Dropout(0.1), gn.Dense(4, 4), d], device="cpu"),
], ids=["dense-act-dense", "adjacent", "apart"])
def test_a_layer_used_twice_in_one_model_is_refused(build):
    with pytest.raises(ValueError, match=r"layers\[\d\] is the same object as layers\[\d\]"):
        build(gn.Dense(4, 4, activation="relu"))


def test_a_layer_of_another_live_model_is_refused_until_cloned():
    first = gn.Sequential([gn.Dense(3, 4, activation="relu"), gn.Dense(4, 1)], device="cpu",
                          seed=0)
    with pytest.raises(ValueError, match="already belongs to another Sequential"):
        gn.Sequential([first.layers[0], gn.Dense(4, 2)], device="cpu")
    second = gn.Sequential([first.layers[0].clone(), gn.Dense(4, 2)], device="cpu")
    assert second.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    assert first.count_params() == 3 * 4 + 4 + 4 + 1  # untouched


def test_layers_that_do_not_chain():
    with pytest.raises(ValueError, match=r"layer 1 \(Dense\(5, 1\)\) expects in_features=5, "
                                         r"but layer 0 \(Dense\(2, 4.*outputs 4"):
        gn.Sequential([gn.Dense(2, 4), gn.Dense(5, 1)], device="cpu")
    with pytest.raises(TypeError, match=r"layers\[1\]: expected a gpunn Layer"):
        gn.Sequential([gn.Dense(2, 4), "relu"], device="cpu")
    with pytest.raises(ValueError, match="non-empty list"):
        gn.Sequential([], device="cpu")


@pytest.mark.parametrize("arch,match", [
    ([{"input_dim": 2, "activation": "relu"}], r"architecture\[0\]: missing key\(s\) "
                                               r"\['output_dim'\]"),
    ([{"input_dim": 2, "output_dim": 3, "activaton": "relu"}], r"unknown key\(s\) "
                                                               r"\['activaton'\]"),
    ([{"input_dim": 2, "output_dim": 3, "activation": "swish"}],
     r"architecture\[0\]: unknown activation 'swish'"),
    ([{"input_dim": 2, "output_dim": 3}, {"input_dim": 4, "output_dim": 1}],
     "do not chain"),
    ([{"input_dim": 2, "output_dim": -3}], "output_dim|out_features"),
    ([], "non-empty list"),
    (["relu"], r"architecture\[0\]: expected a dict"),
])
def test_from_architecture_errors(arch, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gn.Sequential.from_architecture(arch, device="cpu")


def test_to_moves_parameters_and_optimizer_state(backend, moons, binary_classifier):
    X, y = moons
    model = binary_classifier()
    opt = gn.optim.Adam(lr=0.01)
    model.fit(X, y, loss="bce", optimizer=opt, epochs=1, verbose=0)
    before = gn.to_numpy(model.predict(X))
    model.to(backend)
    assert model.backend is backend or model.backend.name == backend.name
    assert all(backend.owns(p) for p in model.parameters())
    assert all(backend.owns(v) for s in opt.state for v in s.values())
    np.testing.assert_allclose(gn.to_numpy(model.predict(X)), before, rtol=1e-5)
    model.fit(X, y, loss="bce", optimizer=opt, epochs=1, verbose=0)  # continues there
    assert opt.t == 2 * 2  # 64 samples / batch 32 = 2 steps per epoch
    model.to("cpu")
    assert all(isinstance(p, np.ndarray) for p in model.parameters())


@pytest.mark.parametrize("hook", ["on_epoch_begin", "on_batch_end", "on_epoch_end"])
def test_moving_the_model_during_fit_is_refused(hook, moons, binary_classifier):
    X, y = moons
    model = binary_classifier()

    class Mover(gn.callbacks.Callback):
        pass

    setattr(Mover, hook, lambda self, model, *args: model.to("cpu"))
    with pytest.raises(RuntimeError, match=r"model.to\('cpu'\) while fit is running"):
        model.fit(X, y, loss="bce", epochs=2, batch_size=16, callbacks=[Mover()],
                  verbose=0)
    model.to("cpu")  # fine again once fit has returned
    assert model.fit(X, y, loss="bce", epochs=1, verbose=0).epoch == [1]


def test_in_place_weight_setting_changes_output():
    model = gn.Sequential([gn.Dense(2, 1)], device="cpu", seed=0)
    model.layers[0].params["W"][...] = np.array([[2.0], [3.0]])
    model.layers[0].params["b"][...] = 1.0
    np.testing.assert_allclose(gn.to_numpy(model.predict([[1.0, 1.0]])), [[6.0]])


def test_regression_metrics():
    X, y = gn.data.make_linear(128, seed=0)
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    hist = model.fit(X, y, loss="mse", optimizer=gn.optim.Adam(lr=0.05), epochs=30,
                     metrics=["mae", "r2"], validation_data=(X, y), verbose=0)
    assert {"mae", "r2", "val_mae", "val_r2"} <= set(hist.history)
    pred = gn.to_numpy(model.predict(X)).ravel()
    assert hist.history["val_r2"][-1] == pytest.approx(gn.metrics.r2_score(y, pred), rel=1e-4)
    assert gn.metrics.mean_squared_error(y, pred) == pytest.approx(
        float(np.mean((y - pred) ** 2)), rel=1e-5)
    assert gn.metrics.mean_absolute_error(y, pred) == pytest.approx(
        float(np.mean(np.abs(y - pred))), rel=1e-5)


def test_multiclass_accuracy_metric():
    y = np.array([0, 2, 1, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.5, 0.4, 0.1]])
    assert gn.metrics.accuracy(y, p) == 0.75
    assert gn.metrics.accuracy(np.eye(3)[y], p) == 0.75
    assert gn.metrics.accuracy([1, 0, 1], np.array([0.9, 0.4, 0.2])) == pytest.approx(2 / 3)


@pytest.mark.slow
def test_nothing_of_the_data_outlives_fit():
    """After fit, evaluate and predict return, no dataset-sized array stays alive: batches
    are gathered into small buffers (no shuffled copy of the dataset) and layers forget
    their last batch."""
    import gc
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.standard_normal((100_000, 32))  # float64: fit makes a float32 copy (12.8 MB)
    y = rng.integers(0, 2, 100_000)
    model = gn.Sequential([gn.Dense(32, 8, activation="relu"),
                           gn.Dense(8, 1, activation="sigmoid")], device="cpu", seed=0)
    gc.collect()
    tracemalloc.start()
    for call in (lambda: model.fit(X, y, loss="bce", epochs=2, batch_size=1024,
                                   validation_data=(X, y), verbose=0),
                 lambda: model.evaluate(X, y),
                 lambda: model.predict(X) is None):
        tracemalloc.reset_peak()
        call()
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
        assert kept < 1_000_000, f"{kept / 1e6:.1f} MB still referenced"
        # At most the float32 copies of X (train and validation) and little else, never
        # a shuffled copy per epoch.
        assert peak < 2 * X.size * 4 * 1.3, f"peak {peak / 1e6:.1f} MB"
    tracemalloc.stop()


def test_fit_keeps_its_positional_signature():
    """The public signature of Sequential.fit is what it was before the training loop
    moved out (positional calls keep working); new arguments come after the old ones."""
    import inspect

    names = list(inspect.signature(gn.Sequential.fit).parameters)
    assert names == ["self", "X", "y", "loss", "optimizer", "epochs", "batch_size",
                     "validation_data", "shuffle", "verbose", "seed", "metrics",
                     "device_data", "callbacks", "on_divergence", "resume_from",
                     "sample_weight", "class_weight", "batch_source", "validation_split"]
    X, y = gn.data.make_moons(64, seed=0)
    model = gn.Sequential([gn.Dense(2, 1, activation="sigmoid")], device="cpu", seed=0)
    hist = model.fit(X, y, "bce", "sgd", 2, 16, (X, y), False, 0)
    assert hist.epoch == [1, 2] and "val_loss" in hist.history
