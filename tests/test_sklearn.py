"""The scikit-learn estimators pass scikit-learn's own estimator checks."""

import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn not installed")
from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gpunn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@parametrize_with_checks([MLPClassifier(epochs=60, random_state=0),
                          MLPRegressor(epochs=60, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_classifier_on_iris_with_string_labels():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(epochs=100, random_state=0).fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.score(X, names) > 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(1), 1.0)
    assert len(clf.loss_curve_) == 100 and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_works_in_pipelines_and_cross_validation():
    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(make_pipeline(MLPClassifier(random_state=0)), X, y,
                             cv=3)
    assert scores.mean() > 0.9


def test_regressor_multi_output_and_pickle():
    X, y = make_regression(200, 5, n_targets=2, noise=0.1, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(32,), epochs=150, learning_rate=0.01,
                       random_state=0).fit(X, y)
    assert reg.predict(X).shape == (200, 2) and reg.score(X, y) > 0.95
    clone = pickle.loads(pickle.dumps(reg))
    np.testing.assert_allclose(clone.predict(X), reg.predict(X), rtol=1e-6)
    assert clone.model_.device == "cpu"
    assert b"cupy" not in pickle.dumps(reg)


def test_params_round_trip():
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), epochs=3)
    assert clf.get_params()["hidden_layer_sizes"] == (8, 4)
    clf.set_params(learning_rate=0.5)
    assert clf.learning_rate == 0.5
