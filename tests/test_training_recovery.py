"""Training recovery (gpunn.training.recovery, and resuming from checkpoints): divergence
raised, stopped or skipped; roll-backs that leave history, weights and messages in
agreement; Ctrl-C; out of memory; resumed runs identical to uninterrupted ones."""

import os
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


# ---------------------------------------------------------------------- roll-back
def test_a_snapshot_restored_twice_gives_the_same_state_both_times(classifier):
    """Restoring hands the optimiser copies: its in-place updates after a roll-back must
    not change the snapshot a later roll-back returns to (NumPy's asarray hands back the
    very array when device and dtype match)."""
    from gpunn.training.recovery import Snapshot

    X, y = gn.data.make_spirals(120, seed=0)
    model = classifier(seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    opt = model.optimizer
    snap = Snapshot(model, opt, None, 1)
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
