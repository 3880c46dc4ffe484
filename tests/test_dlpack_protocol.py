"""The DLPack path without PyTorch (CI has no PyTorch): an array of a library gpunn knows
nothing about, speaking only the DLPack protocol, is taken over without a copy and gives
exactly the NumPy results."""

import numpy as np
import pytest

import gpunn as gn


class Foreign:
    """An array of an unknown library: nothing but ``__dlpack__``/``__dlpack_device__``
    (no ``__array__``, no buffer protocol, no ``shape``)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, size=n)


def _model():
    return gn.Sequential([gn.Dense(4, 8, activation="tanh"),
                          gn.Dense(8, 3, activation="softmax")], device="cpu", seed=0)


def test_foreign_arrays_train_predict_and_evaluate_as_numpy_does():
    X, y = _data()
    runs = []
    for wrap in (lambda a: a, Foreign):
        model = _model()
        hist = model.fit(wrap(X), wrap(y), loss="categorical_crossentropy", epochs=2,
                         batch_size=16, verbose=0, seed=0)
        runs.append((hist.history, model.predict(wrap(X)),
                     model.evaluate(wrap(X), wrap(y))))
    assert runs[0][0] == runs[1][0]  # bitwise: the same values reached the same steps
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]


def test_a_foreign_float32_array_is_taken_over_not_copied():
    X, _ = _data()
    backend = gn.get_backend("cpu")
    inside = backend.asarray(Foreign(X))
    assert np.shares_memory(inside, X)
    assert np.shares_memory(gn.from_dlpack(Foreign(X)), X)


def test_what_is_not_an_array_is_refused_by_from_dlpack():
    with pytest.raises(TypeError, match="expected an array with __dlpack__"):
        gn.from_dlpack([[1.0, 2.0]])
