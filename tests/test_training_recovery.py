"""Training recovery (gpunn.training.recovery, and resuming from checkpoints): divergence
raised, stopped or skipped; roll-backs that leave history, weights and messages in
agreement; Ctrl-C; out of memory; resumed runs identical to uninterrupted ones."""

import os
import re
import signal

import numpy as np
import pytest

import gpunn as gn
from gpunn import callbacks as cbs

# Diverging runs overflow on purpose; NumPy's warnings about it are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


class _EpochStart(cbs.Callback):
    """Remembers the parameters at the start of every epoch."""

    def on_epoch_begin(self, model, epoch):
        self.params = [gn.to_numpy(p).copy() for p in model.parameters()]


# ---------------------------------------------------------------------- divergence
def test_divergence_raises_naming_epoch_and_step_and_restores(backend, regression,
                                                             regressor):
    X, y = regression
    model, start = regressor(backend), _EpochStart()
    with pytest.raises(gn.TrainingDiverged, match=r"at epoch 1, step \d+.*lower learning "
                                                   r"rate \(lr=1e\+06\)") as info:
        model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e6), epochs=3, batch_size=32,
                  callbacks=[start], verbose=0)
    assert info.value.epoch == 1 and 1 <= info.value.step <= 8
    for p, saved in zip(model.parameters(), start.params):
        np.testing.assert_array_equal(gn.to_numpy(p), saved)
    assert model.optimizer.t == 0  # optimiser put back too
    assert np.isfinite(gn.to_numpy(model.predict(X))).all()


def test_divergence_stop_returns_history(regression, regressor):
    X, y = regression
    model = regressor()
    model.fit(X, y, loss="mse", optimizer=gn.optim.Adam(lr=0.01), epochs=2, verbose=0)
    good = [gn.to_numpy(p).copy() for p in model.parameters()]
    model.optimizer.lr = 1e8  # now it blows up
    opt = model.optimizer
    hist = model.fit(X, y, loss="mse", optimizer=opt, epochs=5, on_divergence="stop",
                     verbose=0)
    assert hist.epoch == []  # the first epoch diverged and was rolled back
    for p, saved in zip(model.parameters(), good):
        np.testing.assert_array_equal(gn.to_numpy(p), saved)


def test_divergence_skip_drops_bad_batches(regression, regressor):
    X, y = regression
    model = regressor()
    hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e6), epochs=3,
                     batch_size=32, on_divergence="skip", verbose=0)
    assert sum(hist.history["skipped"]) > 0
    assert all(np.isfinite(gn.to_numpy(p)).all() for p in model.parameters())
    with pytest.raises(ValueError, match="on_divergence: expected 'raise', 'stop', 'skip' or"):
        model.fit(X, y, loss="mse", on_divergence="ignore", verbose=0)


def test_divergence_checks_off_let_nan_through(regression, regressor):
    X, y = regression
    model = regressor()
    hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e6), epochs=2,
                     on_divergence="off", verbose=0)
    assert not np.isfinite(hist.history["loss"][-1])


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


def test_an_epoch_of_skipped_steps_reports_nan_and_is_never_best(tmp_path, moons):
    X, y = moons
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


def test_a_snapshot_restored_twice_gives_the_same_state_both_times(classifier):
    """Restoring hands the optimiser copies: its in-place updates after a roll-back must
    not change the snapshot a later roll-back returns to (NumPy's asarray hands back the
    very array when device and dtype match)."""
    from gpunn.training.recovery import Snapshot

    X, y = gn.data.make_spirals(120, seed=0)
    model = classifier(seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    opt = model.optimizer
    snap = Snapshot(model, opt, 1)
    want = [{k: gn.to_numpy(v).copy() for k, v in s.items()} for s in opt.state]
    params = [gn.to_numpy(p).copy() for p in model.parameters()]
    for _ in range(2):
        snap.restore()
        for s, w in zip(opt.state, want):
            for k in w:
                np.testing.assert_array_equal(gn.to_numpy(s[k]), w[k])
        for p, w in zip(model.parameters(), params):
            np.testing.assert_array_equal(gn.to_numpy(p), w)
        model.fit(X, y, loss="cross_entropy", optimizer=opt, epochs=1, verbose=0,
                  on_divergence="off")  # updates parameters and state in place


# ---------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_stops_after_the_current_step(capsys, spirals, classifier):
    X, y = spirals
    steps = []
    handler = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job

    class PressCtrlC(cbs.Callback):
        def on_batch_end(self, model, batch, rows, loss_sum):
            steps.append(batch)
            if model.optimizer.t == 30:
                os.kill(os.getpid(), signal.SIGINT)

    model = classifier(seed=0)
    hist = model.fit(X, y, loss="cross_entropy", epochs=50, batch_size=32,
                     callbacks=[PressCtrlC()], verbose=1)
    # 19 steps per epoch: stopped at step 30, in epoch 2, then put back at the end of
    # epoch 1 so weights, optimiser, history and checkpoint state agree.
    assert steps[-1] == 10 and len(hist.epoch) == 1
    assert model.optimizer.t == 19 and model.train_state["epoch"] == 1
    assert "interrupted during epoch 2" in capsys.readouterr().out
    assert np.isfinite(model.evaluate(X, y)["loss"])  # still usable
    assert model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0).epoch == [1]
    assert signal.getsignal(signal.SIGINT) is handler  # put back as it was


# ---------------------------------------------------------------------- out of memory
def test_out_of_memory_becomes_a_clear_error(monkeypatch, spirals, classifier):
    X, y = spirals
    model = classifier(seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    dense = model.layers[2]
    calls = {"n": 0}
    original = type(dense).forward_logits  # the output layer's step under its loss

    def exhausted(self, x, training=False, add_bias=True, activate=False):
        calls["n"] += 1
        if calls["n"] == 5:
            raise MemoryError("Unable to allocate 64.0 GiB")
        return original(self, x, training, add_bias, activate)

    monkeypatch.setattr(type(dense), "forward_logits", exhausted)
    with pytest.raises(gn.DeviceMemoryError, match=r"out of memory on cpu while training "
                                                   r"with batch_size=32: .* MiB .*Lower "
                                                   r"batch_size"):
        model.fit(X, y, loss="cross_entropy", optimizer=model.optimizer, epochs=2,
                  verbose=0)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(gn.to_numpy(p), b)
    monkeypatch.undo()
    assert model.evaluate(X, y)["loss"] > 0  # usable afterwards


@pytest.mark.parametrize("call", ["evaluate", "predict", "validation"])
def test_out_of_memory_outside_training_steps_is_a_clear_error(call, monkeypatch, tiny,
                                                               binary_classifier):
    X2, Y2 = tiny
    model = binary_classifier()
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


# ---------------------------------------------------------------------- resuming
def test_resumed_run_is_bitwise_identical(tmp_path, spirals, classifier):
    X, y = spirals
    val = (X[:100], y[:100])
    kwargs = dict(loss="cross_entropy", batch_size=32, validation_data=val, verbose=0)
    straight = classifier(seed=0)
    h1 = straight.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), epochs=6, seed=7, **kwargs)
    ckpt = cbs.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"))
    first = classifier(seed=0)
    first.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), epochs=3, seed=7, callbacks=[ckpt],
              **kwargs)
    # A fresh process would build the model anew (other initial weights): resume fixes all.
    resumed = classifier(seed=123)
    h2 = resumed.fit(X, y, optimizer="sgd", epochs=6, seed=99,
                     resume_from=tmp_path / "ckpt-3.npz", **kwargs)
    assert h2.epoch == [1, 2, 3, 4, 5, 6]
    assert h2.history == h1.history
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)
    assert type(resumed.optimizer).__name__ == "Adam" and resumed.optimizer.t == 6 * 19


def test_resume_refuses_a_different_architecture(tmp_path, classifier, regression,
                                                 regressor):
    X, y = gn.data.make_spirals(200, seed=0)
    model = classifier(seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0,
              callbacks=[cbs.ModelCheckpoint(str(tmp_path / "c.npz"))])
    other = gn.Sequential([gn.Dense(2, 8, activation="relu"), gn.Dense(8, 3, "softmax")],
                          device="cpu", seed=0)
    before = [gn.to_numpy(p).copy() for p in other.parameters()]
    with pytest.raises(ValueError, match="holds a different architecture"):
        other.fit(X, y, loss="cross_entropy", resume_from=tmp_path / "c.npz", verbose=0)
    for p, b in zip(other.parameters(), before):
        np.testing.assert_array_equal(p, b)
    regressor().save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        regressor().fit(*regression, resume_from=tmp_path / "plain.npz", verbose=0)


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


# ---------------------------------------------------------------------- resuming callbacks
def _bouncing():
    """Moons under SGD with a learning rate high enough that the validation loss bounces
    (best epochs come early, then none for a while), and a validation set."""
    X, y = gn.data.make_moons(200, noise=0.2, seed=0)
    model = gn.Sequential([gn.Dense(2, 16, activation="relu"), gn.Dropout(0.1),
                           gn.Dense(16, 1, activation="sigmoid")], device="cpu", seed=0)
    return model, X[:150], y[:150], (X[150:], y[150:])


# Every built-in callback that fit does not add itself, as a user would configure it. A new
# callback class must get an entry here (test_every_builtin_callback_has_a_resume_case).
RESUMABLE = {
    "EarlyStopping": lambda d: cbs.EarlyStopping(patience=4),
    "EarlyStopping-restore": lambda d: cbs.EarlyStopping(patience=4,
                                                         restore_best_weights=True),
    "ModelCheckpoint": lambda d: cbs.ModelCheckpoint(str(d / "e-{epoch}.npz"), every=2),
    "ModelCheckpoint-best": lambda d: cbs.ModelCheckpoint(str(d / "b-{epoch}.npz"),
                                                          save_best_only=True),
    "LearningRateSchedule": lambda d: cbs.LearningRateSchedule(lambda e, lr0: lr0 / (1 + e)),
    "StepDecay": lambda d: cbs.StepDecay(step_size=2, gamma=0.5),
    "ExponentialDecay": lambda d: cbs.ExponentialDecay(gamma=0.7),
    "CosineDecay": lambda d: cbs.CosineDecay(epochs=6),
    "ReduceLROnPlateau": lambda d: cbs.ReduceLROnPlateau(factor=0.5, patience=1),
    "CSVLogger": lambda d: cbs.CSVLogger(str(d / "log.csv")),
}
#: Added by fit itself, holding no state a run continues from (History is restored apart),
#: and the adapter fit puts around a Keras-style callback (whose state is the callback's).
FIT_ADDS = {"History", "EpochLogger", "ProgressBar", "KerasStyle", "_KerasStyleBatches"}


def test_every_builtin_callback_has_a_resume_case():
    classes = {name for name, obj in vars(cbs).items() if isinstance(obj, type)
               and issubclass(obj, cbs.Callback) and obj is not cbs.Callback}
    covered = {type(make(__import__("pathlib").Path("."))).__name__
               for make in RESUMABLE.values()}
    assert classes - FIT_ADDS <= covered, "add the new callback to RESUMABLE"


def _state(cb):
    """What a callback carries between epochs, arrays as lists."""
    return {k: [gn.to_numpy(a).tolist() for a in v] if k == "arrays" else v
            for k, v in cb.state_dict().items() if k != "best_train_state"}


@pytest.mark.parametrize("stop", [3, 4, 5], ids=["before-the-best", "at-the-best",
                                                 "after-the-best"])
@pytest.mark.parametrize("kind", sorted(RESUMABLE))
def test_an_interrupted_and_resumed_run_is_the_uninterrupted_one(kind, stop, tmp_path):
    """For each callback, a run stopped after epoch ``stop`` and resumed from its
    checkpoint with a fresh callback gives the uninterrupted run: learning rates, best
    values, saved epochs, history, weights and optimiser, bitwise."""
    make = RESUMABLE[kind]
    fit = dict(loss="bce", batch_size=16, verbose=0)
    for d in ("straight", "first", "resumed"):
        (tmp_path / d).mkdir()
    model, X, y, val = _bouncing()  # best val_loss at epoch 4, of 8
    straight_cb = make(tmp_path / "straight")
    h1 = model.fit(X, y, optimizer=gn.optim.SGD(lr=0.5, momentum=0.9), epochs=8, seed=3,
                   validation_data=val, callbacks=[straight_cb], **fit)

    first, X, y, val = _bouncing()
    first_cb = make(tmp_path / "first")
    writer = cbs.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"))
    first.fit(X, y, optimizer=gn.optim.SGD(lr=0.5, momentum=0.9), epochs=stop, seed=3,
              validation_data=val, callbacks=[first_cb, writer], **fit)
    resumed, X, y, val = _bouncing()
    resumed_cb = make(tmp_path / "resumed")
    h2 = resumed.fit(X, y, epochs=8, validation_data=val, callbacks=[resumed_cb],
                     resume_from=tmp_path / f"ckpt-{stop}.npz", **fit)

    assert h2.epoch == h1.epoch and h2.history == h1.history
    for a, b in zip(model.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(gn.to_numpy(a), gn.to_numpy(b))
    assert resumed.optimizer.t == model.optimizer.t
    assert resumed.optimizer.lr == model.optimizer.lr
    for a, b in zip(resumed.optimizer.state_dict()["state"], model.optimizer.state_dict()["state"]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert _state(resumed_cb) == _state(straight_cb)
    if isinstance(straight_cb, cbs.ModelCheckpoint):
        epochs = [int(re.search(r"-(\d+)\.npz", p).group(1)) for p in straight_cb.saved]
        again = [int(re.search(r"-(\d+)\.npz", p).group(1))
                 for p in first_cb.saved + resumed_cb.saved]
        assert again == epochs


@pytest.mark.parametrize("make", [
    lambda m, d: cbs.EarlyStopping(monitor=m, patience=3),
    lambda m, d: cbs.ModelCheckpoint(str(d / "best.npz"), save_best_only=True, monitor=m)],
    ids=["EarlyStopping", "ModelCheckpoint-best"])
def test_a_best_value_resumes_only_into_a_callback_watching_the_same_quantity(make,
                                                                               tmp_path):
    """A checkpoint's best value is the best of what its callback watched: resumed into a
    callback watching another quantity (the train loss's best judging the validation
    loss) it would stop early or never save, silently. Refused, naming both."""
    model, X, y, val = _bouncing()
    fit = dict(loss="bce", batch_size=16, verbose=0, validation_data=val)
    model.fit(X, y, optimizer=gn.optim.SGD(lr=0.5), epochs=2, seed=3, **fit,
              callbacks=[make("loss", tmp_path),
                         cbs.ModelCheckpoint(str(tmp_path / "ckpt.npz"))])
    for monitor in ("val_loss", "val_accuracy"):
        again, X, y, val = _bouncing()
        with pytest.raises(ValueError, match=r"ckpt.npz: .*the checkpoint's watched 'loss' "
                                             rf"\(min\), this one watches '{monitor}'"):
            again.fit(X, y, epochs=4, callbacks=[make(monitor, tmp_path)],
                      resume_from=tmp_path / "ckpt.npz", **fit)
    again, X, y, val = _bouncing()  # the same quantity resumes
    again.fit(X, y, epochs=3, callbacks=[make("loss", tmp_path)],
              resume_from=tmp_path / "ckpt.npz", **fit)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_schedule_on_a_loaded_model_starts_from_the_optimizers_own_rate(tmp_path, suffix):
    """A model saved after a scheduled fit and loaded again continues as the model in
    memory does: a schedule of the next fit starts from the rate the optimiser was given
    (0.1), not from the one the last schedule set (0.025)."""
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    X, y = gn.data.make_moons(64, seed=0)
    model = gn.Sequential([gn.Dense(2, 4, activation="relu"),
                           gn.Dense(4, 1, activation="sigmoid")], device="cpu", seed=0)
    h = model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=0.1), epochs=3, verbose=0,
                  callbacks=[cbs.StepDecay(1, 0.5)])
    assert h.history["lr"] == [0.1, 0.05, 0.025]
    model.save(tmp_path / f"m{suffix}")
    loaded = gn.load(tmp_path / f"m{suffix}", device="cpu")
    in_memory = model.fit(X, y, epochs=2, verbose=0, callbacks=[cbs.StepDecay(1, 0.5)])
    again = loaded.fit(X, y, epochs=2, verbose=0, callbacks=[cbs.StepDecay(1, 0.5)])
    assert again.history["lr"] == in_memory.history["lr"] == [0.1, 0.05]
    loaded.optimizer.lr = 0.2  # a rate set by the user is the optimiser's own again
    assert loaded.fit(X, y, epochs=1, verbose=0,
                      callbacks=[cbs.StepDecay(1, 0.5)]).history["lr"] == [0.2]


def test_restoring_the_best_weights_restores_their_optimiser_and_epoch(tmp_path, capsys):
    """After EarlyStopping puts back the best epoch's weights, a save holds that epoch's
    optimiser state and counter too: resuming from it continues from the best epoch,
    exactly as resuming from a checkpoint written at that epoch does."""
    model, X, y, val = _bouncing()
    stop = cbs.EarlyStopping(patience=3, restore_best_weights=True)
    every = cbs.ModelCheckpoint(str(tmp_path / "e-{epoch}.npz"))
    hist = model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=0.5, momentum=0.9),
                     epochs=30, seed=3, batch_size=16, validation_data=val,
                     callbacks=[stop, every], verbose=0)
    best = stop.best_epoch
    assert 0 < best < len(hist.epoch)  # the case in question: not the last epoch
    assert stop.restored_epoch == best
    assert f"restored the weights of epoch {best}" in capsys.readouterr().out
    model.save(tmp_path / "after.npz")
    # The best copy is the file's own weights and optimiser: not written a second time.
    assert not [k for k in np.load(tmp_path / "after.npz").files if k.startswith("train/")]
    after, at_best = gn.load(tmp_path / "after.npz"), gn.load(tmp_path / f"e-{best}.npz")
    assert after.train_state["epoch"] == best
    assert {k: v for k, v in after.train_state.items() if k != "callbacks"} == \
        {k: v for k, v in at_best.train_state.items() if k != "callbacks"}
    assert after.optimizer.t == at_best.optimizer.t
    for a, b in zip(after.optimizer.state_dict()["state"],
                    at_best.optimizer.state_dict()["state"]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    for a, b in zip(after.parameters(), at_best.parameters()):
        np.testing.assert_array_equal(gn.to_numpy(a), gn.to_numpy(b))
    runs = []
    for name in ("after.npz", f"e-{best}.npz"):
        again, X, y, val = _bouncing()
        h = again.fit(X, y, loss="bce", epochs=best + 2, batch_size=16, validation_data=val,
                      resume_from=tmp_path / name, verbose=0,
                      callbacks=[cbs.EarlyStopping(patience=3, restore_best_weights=True)])
        runs.append((h.epoch, h.history, [gn.to_numpy(p) for p in again.parameters()]))
    assert runs[0][0] == list(range(1, best + 3))  # continued from the best epoch
    assert runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][2], runs[1][2]):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_without_snapshots_keeps_the_history_true(capsys, spirals, classifier):
    """on_divergence="off" keeps no copy to go back to: the weights stay mid-epoch, and the
    history says so (the partial epoch is recorded as such, no checkpoint state claims a
    complete one)."""
    X, y = spirals

    class PressCtrlC(cbs.Callback):
        def on_batch_end(self, model, batch, rows, loss_sum):
            if model.optimizer.t == 30:
                os.kill(os.getpid(), signal.SIGINT)

    model = classifier(seed=0)
    hist = model.fit(X, y, loss="cross_entropy", epochs=50, batch_size=32,
                     callbacks=[PressCtrlC()], on_divergence="off", verbose=1)
    assert model.optimizer.t == 30
    assert hist.epoch == [1, 2] and len(hist.history["loss"]) == 2
    assert hist.partial == {"epoch": 2, "samples": 11 * 32, "of": 600}
    assert model.train_state is None  # nothing to resume from mid-epoch
    out = capsys.readouterr().out
    assert "interrupted during epoch 2" in out and "partial" in out


@pytest.mark.parametrize("kind", sorted(RESUMABLE))
def test_a_callback_reused_for_another_fit_behaves_as_a_fresh_one(kind, tmp_path):
    """Every built-in callback resets in on_train_begin: used again, on another model and
    optimiser, it gives what a new one gives (history, learning rates, state, weights)."""
    fit = dict(loss="bce", batch_size=16, verbose=0, epochs=6, seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    used = RESUMABLE[kind](tmp_path / "a")
    model, X, y, val = _bouncing()
    model.fit(X, y, optimizer=gn.optim.SGD(lr=0.5, momentum=0.9), validation_data=val,
              callbacks=[used], **fit)
    results = []
    for cb in (used, RESUMABLE[kind](tmp_path / "b")):
        again, X, y, val = _bouncing()
        again.layers[0].params["W"][...] *= 0.5  # another starting point
        hist = again.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), validation_data=val,
                         callbacks=[cb], **fit)
        results.append((hist.history, [gn.to_numpy(p) for p in again.parameters()],
                        _state(cb), len(getattr(cb, "saved", []))))
    (h1, p1, s1, n1), (h2, p2, s2, n2) = results
    assert h1 == h2 and s1 == s2 and n1 == n2
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


def test_a_best_epoch_undone_by_a_roll_back_is_not_restored(tmp_path, monkeypatch):
    """Snapshots every few epochs: a divergence can roll back past the best epoch; its
    weights are then not put back (they would disagree with the history and counter)."""
    import gpunn.training.loop as loop

    X, y = gn.data.make_linear(256, seed=0)
    model = gn.Sequential([gn.Dense(3, 8, activation="tanh"), gn.Dense(8, 1)], device="cpu",
                          seed=0)

    class Explode(cbs.Callback):
        def on_epoch_begin(self, model, epoch):
            if epoch == 5:
                model.optimizer.lr = 1e12

    trainer_epoch = loop.Trainer._epoch

    def sparse_snapshots(self, epoch, *args):
        self.every = 3
        return trainer_epoch(self, epoch, *args)

    monkeypatch.setattr(loop.Trainer, "_epoch", sparse_snapshots)
    stop = cbs.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    with np.errstate(all="ignore"), pytest.warns(UserWarning, match="undone by a roll-back"):
        hist = model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=0.01), epochs=8,
                         batch_size=64, callbacks=[Explode(), stop], on_divergence="stop",
                         verbose=0)
    assert hist.epoch == [1, 2, 3] and stop.best_epoch == 4 and stop.restored_epoch is None
    assert model.train_state["epoch"] == 3
    model.save(tmp_path / "m.npz")
    assert gn.load(tmp_path / "m.npz").train_state["epoch"] == 3  # a consistent file
