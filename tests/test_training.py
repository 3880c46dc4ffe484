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
