"""Callbacks (gpunn.callbacks): early stopping, checkpoints and their destinations,
learning-rate schedules, custom hooks, the progress bar and epoch lines, and the
Standardizer fit applies."""

import math
import re
import shutil

import numpy as np
import pytest

import gpunn as gn
from gpunn import callbacks as cbs


def _setup(seed=0):
    X, y = gn.data.make_moons(400, noise=0.2, seed=seed)
    Xtr, Xv, ytr, yv = gn.data.train_test_split(X, y, seed=seed)
    model = gn.Sequential([gn.Dense(2, 32, activation="relu"),
                           gn.Dense(32, 1, activation="sigmoid")], device="cpu", seed=0)
    return model, Xtr, ytr, (Xv, yv)


def test_early_stopping_stops_and_restores_best():
    model, X, y, val = _setup()
    # A learning rate this high makes validation loss bounce: patience 2 triggers.
    stop = cbs.EarlyStopping(patience=2, restore_best_weights=True)
    hist = model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=2.0, momentum=0.9),
                     epochs=100, validation_data=val, callbacks=[stop], verbose=0)
    assert len(hist.epoch) < 100 and stop.stopped_epoch == len(hist.epoch)
    best = min(hist.history["val_loss"])
    assert stop.best == best and hist.history["val_loss"][stop.best_epoch - 1] == best
    assert model.evaluate(*val)["loss"] == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("patience,stops_at", [(0, 3), (1, 3), (2, 4), (3, 5)])
def test_patience_counts_epochs_without_improvement(patience, stops_at):
    # Best at epoch 2; epochs 3, 4, 5 do not improve. Patience N: stop after N of them
    # (Keras' rule; 0 and 1 both stop at the first).
    class Model:
        stop_training = False

    stop, model = cbs.EarlyStopping(patience=patience), Model()
    stop.on_train_begin(model)
    for epoch, value in enumerate([1.0, 0.5, 0.6, 0.7, 0.8, 0.9], start=1):
        stop.on_epoch_end(model, epoch, {"val_loss": value})
        if model.stop_training:
            break
    assert stop.stopped_epoch == stops_at and stop.best_epoch == 2


@pytest.mark.parametrize("callback,match", [
    (lambda: cbs.EarlyStopping(), r"monitor 'val_loss' will not be logged \(val_ logs need "
                                  r"validation_data\); this fit logs loss, accuracy"),
    (lambda: cbs.EarlyStopping(monitor="mae"), "monitor 'mae' will not be logged"),
    (lambda: cbs.ModelCheckpoint("x.npz", save_best_only=True, monitor="val_accuracy"),
     "ModelCheckpoint.*'val_accuracy' will not be logged"),
    (lambda: cbs.EarlyStopping(monitor="lr"), "monitor 'lr' will not be logged"),
])
def test_callbacks_must_watch_a_logged_value_checked_before_training(callback, match):
    model, X, y, _ = _setup()
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, loss="bce", epochs=2, callbacks=[callback()], verbose=0)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(gn.to_numpy(p), b)
    assert model.optimizer is None
    # Logged under the right settings: fine.
    model.fit(X, y, loss="bce", epochs=1, verbose=0, callbacks=[
        cbs.StepDecay(), cbs.EarlyStopping(monitor="lr")])


def test_checkpoints_every_n_and_on_best(tmp_path):
    model, X, y, val = _setup()
    every = cbs.ModelCheckpoint(str(tmp_path / "e{epoch:02d}.npz"), every=2)
    best = cbs.ModelCheckpoint(str(tmp_path / "best.npz"), save_best_only=True,
                               monitor="val_accuracy")
    model.fit(X, y, loss="bce", epochs=5, validation_data=val, callbacks=[every, best],
              verbose=0)
    assert sorted(p.name for p in tmp_path.glob("e*.npz")) == ["e02.npz", "e04.npz"]
    assert best.saved and all(p == str(tmp_path / "best.npz") for p in best.saved)
    assert gn.load(tmp_path / "best.npz").optimizer.t > 0



def test_checkpoint_folders_need_not_exist(tmp_path, monkeypatch):
    # The README's relative path, with no folder made by hand; then a folder per epoch
    # and a folder removed mid-training, which fit's check before training cannot cover.
    monkeypatch.chdir(tmp_path)
    model, X, y, val = _setup()

    class RemoveFolder(cbs.Callback):
        def on_epoch_end(self, model, epoch, logs):
            shutil.rmtree(tmp_path / "gone", ignore_errors=True)

    best = cbs.ModelCheckpoint("ckpt/best.npz", save_best_only=True)
    per_epoch = cbs.ModelCheckpoint("runs/epoch-{epoch}/model.npz")
    removed = cbs.ModelCheckpoint("gone/model.npz")
    model.fit(X, y, loss="bce", epochs=2, validation_data=val, verbose=0,
              callbacks=[best, per_epoch, RemoveFolder(), removed])
    assert (tmp_path / "ckpt" / "best.npz").is_file()
    assert sorted(p.parent.name for p in tmp_path.glob("runs/*/model.npz")) == \
        ["epoch-1", "epoch-2"]
    assert gn.load(tmp_path / "gone" / "model.npz").optimizer.t > 0


def test_checkpoint_destinations_are_checked_before_training(tmp_path, tiny,
                                                             binary_classifier):
    (tmp_path / "afile").write_text("x")
    X2, Y2 = tiny
    model = binary_classifier()
    with pytest.raises(ValueError, match="the only placeholder is"):
        gn.callbacks.ModelCheckpoint(str(tmp_path / "m-{step}.npz"))
    bad = gn.callbacks.ModelCheckpoint(str(tmp_path / "afile" / "m-{epoch}.npz"))
    with pytest.raises(ValueError, match="afile: exists and is not a folder"):
        model.fit(X2, Y2, loss="bce", epochs=1, verbose=0, callbacks=[bad])
    assert model.optimizer is None  # refused before training
    new = gn.callbacks.ModelCheckpoint(str(tmp_path / "new" / "m-{epoch}.npz"))
    model.fit(X2, Y2, loss="bce", epochs=1, verbose=0, callbacks=[new])
    assert (tmp_path / "new" / "m-1.npz").is_file()


@pytest.mark.parametrize("schedule,expected", [
    (cbs.StepDecay(step_size=2, gamma=0.5), [0.1, 0.1, 0.05, 0.05, 0.025]),
    (cbs.ExponentialDecay(gamma=0.5), [0.1, 0.05, 0.025, 0.0125, 0.00625]),
    (cbs.CosineDecay(epochs=4, min_lr=0.0), [0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2,
                                             0.05, 0.1 * (1 + math.cos(3 * math.pi / 4)) / 2,
                                             1e-12]),
    (cbs.LearningRateSchedule(lambda e, lr0: lr0 / (1 + e)), [0.1, 0.05, 0.1 / 3, 0.025, 0.02]),
])
def test_learning_rate_schedules(schedule, expected):
    model, X, y, _ = _setup()
    hist = model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=0.1), epochs=5,
                     callbacks=[schedule], verbose=0)
    np.testing.assert_allclose(hist.history["lr"], expected, rtol=1e-9)


def test_custom_callback_sees_every_hook():
    calls = []

    class Recorder(cbs.Callback):
        def on_train_begin(self, model):
            calls.append("begin")

        def on_epoch_begin(self, model, epoch):
            calls.append(f"e{epoch}")

        def on_batch_end(self, model, batch, rows, loss_sum):
            calls.append(rows)

        def on_epoch_end(self, model, epoch, logs):
            logs["custom"] = 1.0
            if epoch == 2:
                model.stop_training = True

        def on_train_end(self, model, history):
            calls.append("end")

    model, X, y, _ = _setup()
    hist = model.fit(X[:64], y[:64], loss="bce", epochs=5, batch_size=32,
                     callbacks=[Recorder()], verbose=0)
    assert calls == ["begin", "e1", 32, 64, "e2", 32, 64, "end"]
    assert hist.history["custom"] == [1.0, 1.0]


@pytest.mark.parametrize("make,match", [
    (lambda: cbs.EarlyStopping(patience=-1), "patience"),
    (lambda: cbs.EarlyStopping(mode="up"), "mode"),
    (lambda: cbs.ModelCheckpoint("", every=1), "path"),
    (lambda: cbs.ModelCheckpoint("m.npz", every=0), "every"),
    (lambda: cbs.StepDecay(gamma=0), "gamma"),
    (lambda: cbs.CosineDecay(epochs=0), "epochs"),
    (lambda: cbs.LearningRateSchedule(0.1), "schedule"),
])
def test_bad_callback_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_callbacks_must_be_callbacks():
    model, X, y, _ = _setup()
    with pytest.raises(TypeError, match=r"callbacks\[0\]: expected a gpunn.callbacks.Callback"):
        model.fit(X, y, loss="bce", callbacks=[print], verbose=0)


def test_standardizer_is_applied_by_fit_and_predict(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3)) * [1000.0, 0.001, 1.0] + [5e4, 0.0, -3.0]
    y = (X[:, 0] > 5e4).astype(int)
    model = gn.Sequential([gn.Dense(3, 8, activation="tanh"), gn.Dense(8, 1, "sigmoid")],
                          device=backend, seed=0)
    model.preprocessor = gn.preprocessing.Standardizer().fit(X)
    np.testing.assert_allclose(model.preprocessor.mean, X.mean(0))
    model.fit(X, y, loss="bce", optimizer=gn.optim.Adam(lr=0.05), epochs=40, verbose=0)
    assert model.evaluate(X, y)["accuracy"] > 0.95
    with pytest.raises(ValueError, match="Standardizer.fit: expected a non-empty 2-D array"):
        gn.preprocessing.Standardizer().fit(np.zeros((0, 3)))


def test_progress_bar_and_epoch_line_show_samples_per_second_legibly(monkeypatch):
    import io

    from gpunn import callbacks

    clock = iter(range(10**6))  # each reading 1 ms after the last
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock) / 1000)
    out = io.StringIO()
    bar = callbacks.ProgressBar(500_000, 100, 3, refresh=0, file=out)
    bar.on_epoch_begin(None, 1)
    for batch in range(5):
        bar.on_batch_end(None, batch, (batch + 1) * 100, np.float32(50.0 * (batch + 1)))
    text = out.getvalue()
    bar.on_epoch_end(None, 1, {})
    last = text.split("\r")[-1]
    assert re.search(r"epoch 1/3 +\d+%\|.*\| 5/5000 batches \[.*, loss 0\.5000  "
                     r"\d{2,3},\d{3} samples/s\]$", last), last
    assert "samples_s" not in text and "batch/s" not in text
    line = io.StringIO()
    logger = callbacks.EpochLogger(1_234_567, 3, file=line)
    logger.on_epoch_begin(None, 1)
    logger.on_epoch_end(None, 1, {"loss": 0.5})
    assert re.search(r"loss 0\.5000  \d{1,3}(,\d{3})+ samples/s  \d+\.\d\d s$",
                     line.getvalue().strip()), line.getvalue()


@pytest.mark.parametrize("schedule", [cbs.StepDecay(step_size=1, gamma=0.5),
                                      cbs.ExponentialDecay(gamma=0.5),
                                      cbs.CosineDecay(epochs=4),
                                      cbs.LearningRateSchedule(lambda e, lr0: lr0 / (1 + e))])
def test_a_schedule_starts_from_the_optimisers_own_rate_in_every_fit(schedule):
    """A schedule reused for another fit starts from that fit's optimiser, and a kept
    optimiser's own (undecayed) rate, not the rate the last epoch left."""
    model, X, y, _ = _setup()
    first = model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=0.1), epochs=3,
                      callbacks=[schedule], verbose=0).history["lr"]
    kept = model.fit(X, y, epochs=3, callbacks=[schedule], verbose=0).history["lr"]
    assert kept == first
    other = model.fit(X, y, optimizer=gn.optim.SGD(lr=1.0), epochs=3, callbacks=[schedule],
                      verbose=0).history["lr"]
    np.testing.assert_allclose(other, [10 * lr for lr in first], rtol=1e-12)
    model.optimizer.lr = 0.3  # the user's own change counts from then on
    mine = model.fit(X, y, epochs=1, callbacks=[schedule], verbose=0).history["lr"]
    assert mine == [0.3]


@pytest.mark.parametrize("make", [
    lambda d: cbs.ModelCheckpoint(str(d / "b-{epoch}.npz"), save_best_only=True),
    lambda d: cbs.EarlyStopping(monitor="val_loss", patience=1),
])
def test_a_callback_reused_for_a_second_fit_starts_afresh(make, tmp_path):
    """Every callback resets in on_train_begin: nothing of the first fit's best value
    decides the second (a new model, worse than the first one's best, is still saved)."""
    model, X, y, val = _setup()
    cb = make(tmp_path)
    model.fit(X, y, loss="bce", optimizer=gn.optim.Adam(lr=0.05), epochs=8,
              validation_data=val, callbacks=[cb], verbose=0)
    first_best = cb.best if hasattr(cb, "best") else cb._monitor.best
    fresh, *_ = _setup(seed=1)
    fresh.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=1e-4), epochs=2,
              validation_data=val, callbacks=[cb], verbose=0)
    best = cb.best if hasattr(cb, "best") else cb._monitor.best
    assert best > first_best  # the second fit's own best, worse than the first's
    if isinstance(cb, cbs.ModelCheckpoint):
        assert cb.saved == [str(tmp_path / "b-1.npz"), str(tmp_path / "b-2.npz")]


def test_a_single_callback_is_accepted_without_a_list():
    model, X, y, val = _setup()
    stop = cbs.EarlyStopping(patience=1)
    hist = model.fit(X, y, loss="bce", epochs=3, validation_data=val, callbacks=stop,
                     verbose=0)
    assert stop.best == min(hist.history["val_loss"])
    with pytest.raises(TypeError, match=r"callbacks\[1\]: expected a gpunn.callbacks"):
        model.fit(X, y, epochs=1, callbacks=[stop, "early"], verbose=0)


def test_a_schedule_of_the_wrong_arity_is_refused_before_anything_changes():
    model, X, y, _ = _setup()
    with pytest.raises(ValueError, match=r"schedule: expected a function \(epoch, base_lr\)"):
        cbs.LearningRateSchedule(lambda epoch: 0.1)
    with pytest.raises(ValueError, match=r"schedule: expected a function \(epoch, base_lr\)"):
        cbs.LearningRateSchedule(lambda a, b, c: 0.1)
    cbs.LearningRateSchedule(lambda e, lr0, *rest: lr0)  # callable with two: fine
    assert model.optimizer is None


@pytest.mark.parametrize("name,epochs", [("m" * 252 + "-{epoch}.npz", 1),
                                         ("m" * 248 + "-{epoch}.npz", 100),
                                         ("{epoch}-" + "d" * 252 + "/m.npz", 100)],
                         ids=["too-long-at-once", "too-long-from-epoch-100", "long-folder"])
def test_a_checkpoint_name_too_long_for_some_epoch_is_refused_before_training(
        tmp_path, name, epochs):
    model, X, y, _ = _setup()
    ckpt = cbs.ModelCheckpoint(str(tmp_path / name))
    with pytest.raises(OSError, match="name too long") as info:
        model.fit(X, y, loss="bce", epochs=epochs, callbacks=[ckpt], verbose=0)
    assert ".gpunn-" not in str(info.value)
    assert str(tmp_path) in str(info.value)  # the user's path, formatted
    assert model.optimizer is None  # refused before training
    assert list(tmp_path.iterdir()) == []


def test_early_stopping_says_when_it_stopped_and_which_epoch_it_restored(capsys):
    model, X, y, val = _setup()
    stop = cbs.EarlyStopping(patience=2, restore_best_weights=True)
    model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=2.0, momentum=0.9), epochs=100,
              validation_data=val, callbacks=[stop], verbose=0)
    out = capsys.readouterr().out
    assert f"EarlyStopping: stopped after epoch {stop.stopped_epoch}: val_loss did not " \
           f"improve for 2 epochs (best {stop.best:.4g} at epoch {stop.best_epoch})" in out
    assert f"restored the weights of epoch {stop.best_epoch}" in out
    quiet = cbs.EarlyStopping(patience=2, verbose=0)
    model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=2.0, momentum=0.9), epochs=100,
              validation_data=val, callbacks=[quiet], verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("cooldown,expected", [
    (0, [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]),
    (2, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25])])
def test_reduce_lr_on_plateau_multiplies_the_rate_after_patience_epochs(cooldown, expected):
    class Model:
        optimizer = gn.optim.SGD(lr=1.0)

    cb, model = cbs.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=cooldown,
                                      min_lr=0.1), Model()
    cb.on_train_begin(model)
    rates = []
    for epoch, value in enumerate([1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1], start=1):
        logs = {"val_loss": value}
        cb.on_epoch_end(model, epoch, logs)
        rates.append(logs["lr"])
    assert rates == expected
    for _ in range(20):
        cb.on_epoch_end(model, 9, {"val_loss": 2.0})
    assert model.optimizer.lr == 0.1  # never below min_lr


def test_reduce_lr_on_plateau_in_fit_logs_lr_and_is_checked(capsys):
    model, X, y, val = _setup()
    cb = cbs.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, verbose=1)
    hist = model.fit(X, y, loss="bce", optimizer=gn.optim.SGD(lr=2.0, momentum=0.9),
                     epochs=8, callbacks=[cb], verbose=0)
    assert hist.history["lr"][0] <= 2.0 and min(hist.history["lr"]) < 2.0
    assert "ReduceLROnPlateau: epoch" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau\): monitor 'val_loss' will "
                                         r"not be logged"):
        model.fit(X, y, loss="bce", epochs=1, verbose=0, callbacks=[cbs.ReduceLROnPlateau()])
    for bad, match in [({"factor": 1.0}, r"factor: expected a number in \(0, 1\)"),
                       ({"patience": -1}, "patience"), ({"min_lr": -1.0}, "min_lr")]:
        with pytest.raises(ValueError, match=match):
            cbs.ReduceLROnPlateau(**bad)


def test_csv_logger_writes_a_row_per_epoch(tmp_path):
    import csv

    model, X, y, val = _setup()
    path = tmp_path / "logs" / "history.csv"
    hist = model.fit(X, y, loss="bce", epochs=3, validation_data=val, verbose=0,
                     callbacks=[cbs.StepDecay(step_size=1, gamma=0.5),
                                cbs.CSVLogger(str(path))])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3]
    assert [float(r[1]) for r in rows[1:]] == hist.history["loss"]
    assert [float(r[5]) for r in rows[1:]] == hist.history["lr"]


def test_csv_logger_destination_is_checked_before_training(tmp_path):
    model, X, y, _ = _setup()
    (tmp_path / "file").write_text("")
    with pytest.raises((OSError, ValueError), match="file"):
        model.fit(X, y, loss="bce", epochs=1, verbose=0,
                  callbacks=[cbs.CSVLogger(str(tmp_path / "file" / "h.csv"))])
    assert model.optimizer is None


def test_a_resumed_fit_continues_the_csv_log(tmp_path):
    model, X, y, _ = _setup()
    fit = dict(loss="bce", verbose=0, seed=0, optimizer=gn.optim.SGD(lr=0.1))
    model.fit(X, y, epochs=4, callbacks=[cbs.CSVLogger(str(tmp_path / "straight.csv"))],
              **fit)
    first, X, y, _ = _setup()
    first.fit(X, y, epochs=2, callbacks=[cbs.CSVLogger(str(tmp_path / "run.csv")),
                                         cbs.ModelCheckpoint(str(tmp_path / "c.npz"))], **fit)
    again, X, y, _ = _setup()
    again.fit(X, y, epochs=4, loss="bce", verbose=0, resume_from=str(tmp_path / "c.npz"),
              callbacks=[cbs.CSVLogger(str(tmp_path / "run.csv"))])
    assert (tmp_path / "run.csv").read_text() == (tmp_path / "straight.csv").read_text()


def test_a_keras_style_callback_runs_with_self_model_and_logs():
    seen = []

    class KerasLike(cbs.Callback):
        def on_train_begin(self, logs=None):
            seen.append(("begin", self.model is not None))

        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, round(logs["loss"], 6) == round(logs["loss"], 6)))
            if epoch == 1:
                self.model.stop_training = True

    class Plain:  # not even a gpunn Callback, as a Keras user writes one
        def on_epoch_end(self, epoch, logs=None):
            seen.append(("plain", epoch, sorted(logs)))

    model, X, y, _ = _setup()
    hist = model.fit(X[:64], y[:64], loss="bce", epochs=5, verbose=0,
                     callbacks=[KerasLike(), Plain()])
    assert hist.epoch == [1, 2]  # Keras counts epochs from 0: its epoch 1 is our second
    assert seen == [("begin", True), (0, True), ("plain", 0, ["accuracy", "loss"]),
                    (1, True), ("plain", 1, ["accuracy", "loss"])]


def test_a_hook_of_neither_style_is_refused_showing_gpunns_signature():
    class Odd(cbs.Callback):
        def on_epoch_end(self, a, b, c, d):
            pass

    model, X, y, _ = _setup()
    with pytest.raises(TypeError, match=re.escape(
            "callbacks[0]: Odd.on_epoch_end(a, b, c, d): expected gpunn's on_epoch_end(self, "
            "model, epoch, logs) or Keras' on_epoch_end(self, epoch, logs=None)")):
        model.fit(X, y, loss="bce", epochs=1, verbose=0, callbacks=[Odd()])
    assert model.optimizer is None


def test_a_keras_style_batch_hook_gets_the_running_loss():
    losses = []

    class Batches:
        def on_train_batch_end(self, batch, logs=None):
            losses.append((batch, logs["loss"]))

    model, X, y, _ = _setup()
    model.fit(X[:64], y[:64], loss="bce", epochs=1, batch_size=32, verbose=0,
              callbacks=[Batches()])
    assert [b for b, _ in losses] == [0, 1] and all(math.isfinite(v) for _, v in losses)


def test_set_model_is_used_where_a_callback_has_it():
    class WithSetter:
        def set_model(self, model):
            self.given = model

        def on_epoch_end(self, epoch, logs=None):
            pass

    model, X, y, _ = _setup()
    cb = WithSetter()
    model.fit(X[:32], y[:32], loss="bce", epochs=1, verbose=0, callbacks=[cb])
    assert cb.given is model
