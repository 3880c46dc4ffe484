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
