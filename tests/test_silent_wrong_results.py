"""Inputs that used to train silently wrong now refuse clearly or behave correctly:
a layer used twice, targets that do not fit the loss, epochs whose every step was skipped,
and roll-backs that must leave history, weights and messages in agreement."""

import numpy as np
import pytest

import gpunn as gn


# ---------------------------------------------------------------------- one layer, twice
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


# ---------------------------------------------------------------------- targets vs loss
X4 = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
ONE_HOT = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]


@pytest.mark.parametrize("loss,y,match", [
    ("cross_entropy", ONE_HOT * 2, "row sums from 2 to 2"),
    ("cross_entropy", np.clip(ONE_HOT + np.eye(3)[[1, 2, 0, 1, 2, 0]], 0, 1),
     "row sums from 2 to 2"),
    ("cross_entropy", ONE_HOT - 0.5, "non-negative"),
    ("cross_entropy", np.zeros((6, 3), np.float32), "row sums from 0 to 0"),
    ("cross_entropy", np.full((6, 3), 0.5, np.float32), "row sums from 1.5"),
    (gn.losses.CategoricalCrossEntropy(from_logits=True), ONE_HOT * 3, "row sums from 3"),
    ("bce", np.array([0, 1, 2, 0, 1, 0.5]), r"binary targets must lie in \[0, 1\]"),
    ("bce", np.array([0, 1, -1, 0, 1, 0.5]), r"binary targets must lie in \[0, 1\]"),
    (gn.losses.BinaryCrossEntropy(from_logits=True), np.array([0, 1, 3, 0, 1, 0]),
     r"binary targets must lie in \[0, 1\]"),
], ids=["scaled", "multi-hot", "negative", "all-zero", "uniform-over", "logits-scaled",
        "bce-2", "bce-neg", "bce-logits-3"])
def test_targets_that_do_not_fit_the_loss_are_refused_before_training(loss, y, match):
    out = 1 if "bce" in str(loss) or isinstance(loss, gn.losses.BinaryCrossEntropy) else 3
    act = "sigmoid" if out == 1 else "softmax"
    model = gn.Sequential([gn.Dense(2, out, activation=act)], device="cpu", seed=0)
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        model.fit(X4, y, loss=loss, epochs=1, verbose=0)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(gn.to_numpy(p), b)
    assert model.optimizer is None


def test_probability_rows_and_labels_still_train():
    soft = np.full((6, 3), 0.1, np.float32) + 0.7 * ONE_HOT  # label smoothing: rows sum to 1
    for y in (soft, ONE_HOT, np.array([0, 1, 2, 0, 1, 2])):
        model = gn.Sequential([gn.Dense(2, 3, activation="softmax")], device="cpu", seed=0)
        hist = model.fit(X4, y, loss="cross_entropy", epochs=2, verbose=0)
        assert np.all(np.asarray(hist.history["loss"]) > 0)


# ---------------------------------------------------------------------- skip mode
class _PoisonEpoch(gn.callbacks.Callback):
    """Makes every step of one epoch non-finite (a NaN weight), then repairs it."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, model, epoch):
        if epoch == self.epoch:
            self.saved = gn.to_numpy(model.layers[0].params["W"]).copy()
            model.layers[0].params["W"][0, 0] = np.nan
        elif epoch == self.epoch + 1:
            model.layers[0].params["W"][...] = self.saved


def test_an_epoch_of_skipped_steps_reports_nan_and_is_never_best(tmp_path):
    X, y = gn.data.make_moons(64, seed=0)
    model = gn.Sequential([gn.Dense(2, 8, activation="tanh"),
                           gn.Dense(8, 1, activation="sigmoid")], device="cpu", seed=0)
    best = gn.callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"),
                                        save_best_only=True, monitor="loss")
    stop = gn.callbacks.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    with np.errstate(all="ignore"):
        hist = model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=0.1), epochs=3,
                         batch_size=16, on_divergence="skip", verbose=0,
                         callbacks=[_PoisonEpoch(2), best, stop])
    assert hist.history["skipped"] == [0.0, 4.0, 0.0]
    assert np.isnan(hist.history["loss"][1]) and np.isnan(hist.history["accuracy"][1])
    assert np.isfinite(hist.history["loss"][0]) and np.isfinite(hist.history["loss"][2])
    assert str(tmp_path / "best-2.npz") not in best.saved and stop.best_epoch != 2


def test_skipped_steps_count_toward_nothing():
    """Only valid steps' rows are averaged: the epoch's loss equals the mean over them."""
    X, y = gn.data.make_moons(64, seed=1)
    y = y.astype(np.float32)

    class Poison(gn.callbacks.Callback):
        def on_epoch_begin(self, model, epoch):
            model.layers[0].params["W"][0, 0] = np.nan if epoch == 1 else 0.5

    model = gn.Sequential([gn.Dense(2, 1, activation="sigmoid")], device="cpu", seed=0)
    with np.errstate(all="ignore"):
        hist = model.fit(X, y, loss="bce", epochs=1, batch_size=16, on_divergence="skip",
                         callbacks=[Poison()], verbose=0, shuffle=False)
    assert hist.history["skipped"] == [4.0] and np.isnan(hist.history["loss"][0])
    assert np.isnan(hist.history["accuracy"][0])


# ---------------------------------------------------------------------- roll-back
def test_roll_back_leaves_history_weights_and_message_in_agreement():
    """With snapshots every few epochs, a divergence rolls back several epochs: the history
    returned, the weights and the message all name the same point."""
    X, y = gn.data.make_linear(256, seed=0)
    model = gn.Sequential([gn.Dense(3, 8, activation="tanh"), gn.Dense(8, 1)], device="cpu",
                          seed=0)
    starts = {}

    class Spy(gn.callbacks.Callback):
        def on_epoch_begin(self, model, epoch):
            starts[epoch] = [gn.to_numpy(p).copy() for p in model.parameters()]

    class Explode(gn.callbacks.Callback):
        def on_epoch_begin(self, model, epoch):
            if epoch == 5:
                model.optimizer.lr = 1e12

    import gpunn.training.loop as loop

    trainer_epoch = loop.Trainer._epoch

    def sparse_snapshots(self, epoch, *args):
        self.every = 3  # as a big GPU model would: not every epoch
        return trainer_epoch(self, epoch, *args)

    loop.Trainer._epoch = sparse_snapshots
    try:
        with np.errstate(all="ignore"):
            hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=0.01), epochs=8,
                             batch_size=64, callbacks=[Spy(), Explode()],
                             on_divergence="stop", verbose=0)
    finally:
        loop.Trainer._epoch = trainer_epoch
    # Snapshots at epochs 1 and 4: the divergence in epoch 5 goes back to epoch 4's start.
    assert hist.epoch == [1, 2, 3]
    for p, saved in zip(model.parameters(), starts[4]):
        np.testing.assert_array_equal(gn.to_numpy(p), saved)
    assert model.train_state["epoch"] == 3


# ---------------------------------------------------------------------- device moves
@pytest.mark.parametrize("hook", ["on_epoch_begin", "on_batch_end", "on_epoch_end"])
def test_moving_the_model_during_fit_is_refused(hook):
    X, y = gn.data.make_moons(64, seed=0)
    model = gn.Sequential([gn.Dense(2, 4, activation="tanh"),
                           gn.Dense(4, 1, activation="sigmoid")], device="cpu", seed=0)

    class Mover(gn.callbacks.Callback):
        pass

    setattr(Mover, hook, lambda self, model, *args: model.to("cpu"))
    with pytest.raises(RuntimeError, match=r"model.to\('cpu'\) while fit is running"):
        model.fit(X, y, loss="bce", epochs=2, batch_size=16, callbacks=[Mover()],
                  verbose=0)
    model.to("cpu")  # fine again once fit has returned
    assert model.fit(X, y, loss="bce", epochs=1, verbose=0).epoch == [1]


# ---------------------------------------------------------------------- resume
def test_resume_applies_the_checkpoints_preprocessing_from_the_first_step(tmp_path):
    """A checkpoint carrying a Standardizer resumed into a fresh model (no preprocessor
    yet) trains on standardised data from its first step: bitwise the same as the
    uninterrupted run."""
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((96, 3)) * 50 + 100).astype(np.float32)  # far from standard
    y = (X[:, 0] > 100).astype(np.float32)

    def build():
        return gn.Sequential([gn.Dense(3, 8, activation="tanh"),
                              gn.Dense(8, 1, activation="sigmoid")], device="cpu", seed=0)

    kwargs = dict(loss="bce", batch_size=32, verbose=0, seed=1)
    straight = build()
    straight.preprocessor = gn.preprocessing.Standardizer().fit(X)
    ckpt = gn.callbacks.ModelCheckpoint(str(tmp_path / "c-{epoch}.npz"))
    straight.fit(X, y, epochs=4, callbacks=[ckpt], **kwargs)
    resumed = build()  # no preprocessor of its own
    resumed.fit(X, y, epochs=4, resume_from=tmp_path / "c-2.npz", **kwargs)
    assert resumed.preprocessor is not None
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(gn.to_numpy(a), gn.to_numpy(b))


# ---------------------------------------------------------------------- API arguments
def _model():
    return gn.Sequential([gn.Dense(2, 4, activation="tanh"),
                          gn.Dense(4, 1, activation="sigmoid")], device="cpu", seed=0)


X2 = np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32)
Y2 = (X2[:, 0] > 0).astype(np.float32)


def _with(value):
    bad = X2.copy()
    bad[3, 1] = value
    return bad


@pytest.mark.parametrize("call,error,match", [
    (lambda m: m.fit(X2, Y2, loss="bce", seed=-1, verbose=0), ValueError, "seed: expected"),
    (lambda m: m.fit(X2, Y2, loss="bce", seed=2.5, verbose=0), ValueError, "seed: expected"),
    (lambda m: m.fit(X2, Y2, loss="bce", shuffle="no", verbose=0), ValueError,
     "shuffle: expected True or False"),
    (lambda m: gn.Dense(2, 2, kernel_l2=float("nan")), ValueError, "kernel_l2"),
    (lambda m: m.predict(_with(np.nan)), ValueError, "X: contains NaN"),
    (lambda m: m.predict(_with(-np.inf)), ValueError, "X: contains NaN or Inf"),
    (lambda m: m.evaluate(_with(np.nan), Y2, loss="bce"), ValueError, "X: contains NaN"),
    (lambda m: m.fit(np.ma.masked_array(X2, mask=np.isnan(_with(np.nan))), Y2, loss="bce",
                     verbose=0), TypeError, "1 masked value"),
    (lambda m: m.fit([[0.0, 1.0], [1.0]], [0, 1], loss="bce", verbose=0), TypeError,
     "X: expected a numeric array"),
    (lambda m: (m.forward(X2, training=True), m.backward(np.ones((8, 2))))[1], ValueError,
     r"backward: expected a gradient of the last forward's output shape \(8, 1\)"),
    (lambda m: m.backward(np.ones((8, 1))), RuntimeError, "call forward"),
])
def test_api_arguments_are_checked_before_anything_changes(call, error, match):
    model = _model()
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(error, match=match):
        call(model)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(gn.to_numpy(p), b)


def test_matrix_input_is_a_plain_array():
    model = _model()
    np.testing.assert_allclose(gn.to_numpy(model.predict(np.asmatrix(X2))),
                               gn.to_numpy(model.predict(X2)))


@pytest.mark.parametrize("params,match", [({"alpha": float("nan")}, "finite"),
                                          ({"alpha": 1e9}, "magnitude"),
                                          ({"alpha": "0.2"}, "finite number")])
def test_activation_parameters_are_checked(params, match):
    with pytest.raises(ValueError, match=match):
        gn.Dense(2, 2, activation="leaky_relu", activation_params=params)


def test_a_parameter_replaced_with_the_wrong_shape_is_named():
    model = _model()
    model.layers[0].params["W"] = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"parameter 'W' must have shape \(2, 4\), got an "
                                         r"array of shape \(3, 4\)"):
        model.fit(X2, Y2, loss="bce", epochs=1, verbose=0)


@pytest.mark.parametrize("call", ["evaluate", "predict", "validation"])
def test_out_of_memory_outside_training_steps_is_a_clear_error(call, monkeypatch):
    model = _model()
    model.fit(X2, Y2, loss="bce", epochs=1, verbose=0)
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    dense = model.layers[0]
    real = type(dense).forward

    def exhausted(self, x, training=False):
        if not training:
            raise MemoryError("Unable to allocate 64 GiB")
        return real(self, x, training)

    monkeypatch.setattr(type(dense), "forward", exhausted)
    with pytest.raises(gn.DeviceMemoryError, match="batch_size=4"):
        if call == "evaluate":
            model.evaluate(X2, Y2, batch_size=4)
        elif call == "predict":
            model.predict(X2, batch_size=4)
        else:
            model.fit(X2, Y2, loss="bce", epochs=1, batch_size=4, verbose=0,
                      validation_data=(X2, Y2))
    if call != "validation":
        for p, b in zip(model.parameters(), before):
            np.testing.assert_array_equal(gn.to_numpy(p), b)


@pytest.mark.parametrize("call,match", [
    (lambda: gn.data.make_moons(-5), "make_moons n: expected a positive integer"),
    (lambda: gn.data.make_moons(10.5), "make_moons n"),
    (lambda: gn.data.make_moons(100, noise=-1), "make_moons noise"),
    (lambda: gn.data.make_moons(100, noise=float("nan")), "make_moons noise"),
    (lambda: gn.data.make_circles(100, factor=0), "make_circles factor"),
    (lambda: gn.data.make_spirals(100, classes=0), "make_spirals classes"),
    (lambda: gn.data.make_spirals(100, classes=2.5), "make_spirals classes"),
    (lambda: gn.data.make_blobs(100, features=0), "make_blobs features"),
    (lambda: gn.data.make_blobs(100, spread=-1.0), "make_blobs spread"),
    (lambda: gn.data.make_linear(100, coef=[]), "make_linear coef"),
    (lambda: gn.data.make_xor(8, seed=-2), "make_xor seed"),
    (lambda: gn.data.train_test_split(X2, Y2, seed="x"), "train_test_split seed"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_data_generators_check_their_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ctrl_c_in_any_cli_phase_is_one_line(monkeypatch, capsys):
    from gpunn import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._cli_data, "load_training_data", interrupted)
    assert cli.main(["train", "--epochs", "1"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "gpunn: interrupted"


def test_checkpoint_destinations_are_checked_before_training(tmp_path):
    (tmp_path / "afile").write_text("x")
    model = _model()
    with pytest.raises(ValueError, match="the only placeholder is"):
        gn.callbacks.ModelCheckpoint(str(tmp_path / "m-{step}.npz"))
    bad = gn.callbacks.ModelCheckpoint(str(tmp_path / "afile" / "m-{epoch}.npz"))
    with pytest.raises(ValueError, match="afile: exists and is not a folder"):
        model.fit(X2, Y2, loss="bce", epochs=1, verbose=0, callbacks=[bad])
    assert model.optimizer is None  # refused before training
    new = gn.callbacks.ModelCheckpoint(str(tmp_path / "new" / "m-{epoch}.npz"))
    model.fit(X2, Y2, loss="bce", epochs=1, verbose=0, callbacks=[new])
    assert (tmp_path / "new" / "m-1.npz").is_file()


@pytest.mark.parametrize("make", [
    lambda: gn.losses.get("bce", from_logits="False"),
    lambda: gn.optim.SGD(momentum=0.9, nesterov="no"),
    lambda: gn.optim.Adam(decoupled="no"),
    lambda: gn.callbacks.ModelCheckpoint("a.npz", save_best_only="False"),
    lambda: gn.callbacks.EarlyStopping(restore_best_weights="yes"),
])
def test_flags_must_be_booleans(make):
    with pytest.raises(ValueError, match="expected True or False"):
        make()


def test_resume_refuses_another_loss_and_warns_about_an_ignored_optimizer(tmp_path):
    X, y = gn.data.make_linear(64, seed=0)
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    ckpt = gn.callbacks.ModelCheckpoint(str(tmp_path / "c.npz"))
    model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=0.1), epochs=1, verbose=0,
              callbacks=[ckpt])
    again = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    with pytest.raises(ValueError, match="was trained with loss mse"):
        again.fit(X, y, loss="mae", epochs=2, resume_from=tmp_path / "c.npz", verbose=0)
    with pytest.warns(UserWarning, match="the optimizer passed is not used"):
        again.fit(X, y, loss="mse", optimizer=gn.optim.Adam(lr=0.5), epochs=2,
                  resume_from=tmp_path / "c.npz", verbose=0)
    assert isinstance(again.optimizer, gn.optim.SGD) and again.optimizer.lr == 0.1
