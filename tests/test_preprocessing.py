"""Feature preprocessing (gpunn.preprocessing.Standardizer): statistics that hold at any
magnitude of finite data, and refusal of what a model could not compute with."""

import re

import numpy as np
import pytest

import gpunn as gn
from gpunn.preprocessing import Standardizer


@pytest.mark.parametrize("factor, offset", [(1e200, 0.0), (1e200, 3e200), (1e-200, 0.0),
                                            (1e300, -1e308), (1.0, 1e6)])
def test_statistics_hold_at_any_magnitude(factor, offset):
    X = np.random.default_rng(0).standard_normal((64, 3))
    ref = Standardizer().fit(X)
    s = Standardizer().fit(X * factor + offset)
    np.testing.assert_allclose(s.mean, ref.mean * factor + offset, rtol=1e-9)
    np.testing.assert_allclose(s.scale, ref.scale * factor, rtol=1e-6)
    out = gn.to_numpy(s.transform(X * factor + offset, gn.get_backend("cpu", "float64")))
    expected = gn.to_numpy(ref.transform(X, gn.get_backend("cpu", "float64")))
    np.testing.assert_allclose(out, expected, atol=1e-6 if offset else 1e-9)


def test_constant_features_are_centred_not_divided():
    s = Standardizer().fit(np.array([[1e300, 2.0], [1e300, 4.0]]))
    assert s.scale[0] == 1.0 and s.mean[0] == 1e300


@pytest.mark.parametrize("X, match", [
    (np.array([[0.0, 1.0], [5e-324, 2.0]]), "feature 0.*spread"),
    (np.array([[np.nan, 1.0], [1.0, 2.0]]), "NaN or Inf"),
])
def test_spreads_that_cannot_be_divided_by_are_refused(X, match):
    with pytest.raises(ValueError, match=match):
        Standardizer().fit(X)


# ---------------------------------------------------------------------- finite, not in range
def _model(dtype="float32"):
    return gn.Sequential([gn.Dense(2, 1)], device="cpu", dtype=dtype, seed=0)


@pytest.mark.parametrize("dtype, big", [("float32", 1e300), ("float32", 1e39),
                                        ("float16", 1e5)])
def test_finite_values_beyond_the_dtype_are_out_of_range_not_nan(dtype, big):
    X = np.ones((4, 2))
    X[1, 0] = big
    y = np.ones(4)
    match = "^" + re.escape(f"X: holds values up to {big:.3g}, beyond {dtype}'s range")
    with pytest.raises(ValueError, match=match):
        _model(dtype).predict(X)
    with pytest.raises(ValueError, match=match):
        _model(dtype).fit(X, y, loss="mse", epochs=1, verbose=0)
    y[2] = big
    with pytest.raises(ValueError, match="^" + re.escape(f"y: holds values up to {big:.3g}")):
        _model(dtype).fit(np.ones((4, 2)), y, loss="mse", epochs=1, verbose=0)
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        _model(dtype).predict(np.full((4, 2), np.inf))


def test_integer_targets_beyond_float16_are_out_of_range():
    with pytest.raises(ValueError, match=r"^y: holds values up to 1e\+05, beyond float16"):
        _model("float16").fit(np.ones((4, 2)), np.full(4, 100_000), loss="mse", epochs=1,
                              verbose=0)


def test_sample_weights_beyond_the_dtype_are_out_of_range():
    with pytest.raises(ValueError, match=r"^sample_weight: holds values up to 1e\+300"):
        _model().fit(np.ones((4, 2)), np.ones(4), loss="mse", epochs=1, verbose=0,
                     sample_weight=np.array([1.0, 1e300, 1.0, 1.0]))


def test_transform_refuses_statistics_the_models_dtype_cannot_hold():
    s = Standardizer().fit(np.array([[1e200, 1.0], [-1e200, 2.0]]))
    model = _model()
    model.preprocessor = s
    with pytest.raises(ValueError,
                       match=r"Standardizer scale holds values up to 1e\+200.*float32's"):
        model.predict(np.ones((2, 2)))
    out = gn.to_numpy(s.transform(np.array([[1e200, 1.0]]), gn.get_backend("cpu", "float64")))
    np.testing.assert_allclose(out, [[1.0, -1.0]])


def test_targets_scale_on_the_host_and_come_back_on_the_device():
    y = np.array([1e6, 2e6, 4e6])
    scaler = Standardizer().fit(y.reshape(-1, 1))
    scaled = scaler.scale_targets(y)
    assert scaled.shape == (3, 1) and abs(scaled.mean()) < 1e-12
    backend = gn.get_backend("cpu")
    back = scaler.inverse_transform(backend.asarray(scaled.astype(np.float32)), backend)
    np.testing.assert_allclose(gn.to_numpy(back)[:, 0], y, rtol=1e-6)
    with pytest.raises(ValueError, match="expects 1 target column"):
        scaler.scale_targets(np.ones((3, 2)))


def test_a_model_with_a_target_scaler_fits_and_predicts_in_the_targets_units(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 2))
    y = (X[:, 0] - 2 * X[:, 1]) * 5e5 + 1e7
    model = gn.Sequential([gn.Dense(2, 16, activation="tanh"), gn.Dense(16, 1)],
                          device="cpu", seed=0)
    model.target_scaler = Standardizer().fit(y.reshape(-1, 1))
    model.fit(X, y, loss="mse", epochs=40, verbose=0, seed=0)
    assert model.evaluate(X, y)["loss"] < 0.05  # standardised units
    pred = gn.to_numpy(model.predict(X))[:, 0]
    assert 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2) > 0.95
    model.save(tmp_path / "m.npz")
    loaded = gn.load(tmp_path / "m.npz", device="cpu")
    np.testing.assert_array_equal(gn.to_numpy(loaded.predict(X)), gn.to_numpy(model.predict(X)))


def test_a_target_scaling_that_does_not_fit_the_model_file_is_refused(tmp_path):
    model = gn.Sequential([gn.Dense(2, 3)], device="cpu", seed=0)
    model.target_scaler = Standardizer().fit(np.ones((4, 3)) * np.arange(4)[:, None])
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        arrays = dict(archive)
    arrays["target/scale"] = np.array([1.0, -1.0, 1.0])
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(gn.ModelFileError, match="target scaling's scale must be positive"):
        gn.load(tmp_path / "bad.npz")
    arrays["target/scale"] = np.ones(2)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(gn.ModelFileError, match="target/scale"):
        gn.load(tmp_path / "bad.npz")


def test_resuming_checks_the_target_scaling(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 2)), rng.normal(size=64) * 1e4

    def model(scaled):
        net = gn.Sequential([gn.Dense(2, 1)], device="cpu", seed=0)
        net.target_scaler = Standardizer().fit(y.reshape(-1, 1)) if scaled else None
        return net

    first = model(True)
    first.fit(X, y, loss="mse", epochs=2, verbose=0, callbacks=[
        gn.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.npz"))])
    with pytest.raises(ValueError, match="trained on standardised targets, this model has "
                       "targets as given; set model.target_scaler"):
        model(False).fit(X, y, loss="mse", epochs=3, verbose=0,
                         resume_from=tmp_path / "ckpt.npz")
    resumed = model(True)
    resumed.fit(X, y, loss="mse", epochs=3, verbose=0, resume_from=tmp_path / "ckpt.npz")
