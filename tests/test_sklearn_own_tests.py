"""scikit-learn's own MLP tests, run against gpunn's estimators.

The test functions of the installed scikit-learn's ``sklearn/neural_network/tests/
test_mlp.py`` are collected here with ``MLPClassifier``/``MLPRegressor`` rebound to
``gpunn.sklearn``'s (in their globals and in their parametrisations): shapes, attributes,
``partial_fit``, ``warm_start``, early stopping, multilabel, sample weights, L-BFGS,
learning-rate schedules, warnings. The few that test scikit-learn's private internals are
listed in ``NOT_APPLICABLE`` with the reason and are skipped visibly.
"""

import types

import pytest

sk_mlp = pytest.importorskip("sklearn.neural_network.tests.test_mlp",
                             reason="scikit-learn (with its tests) not installed")
import sklearn.neural_network as sk_nn  # noqa: E402

import gpunn.sklearn as ours  # noqa: E402

SWAP = {sk_nn.MLPClassifier: ours.MLPClassifier, sk_nn.MLPRegressor: ours.MLPRegressor}

NOT_APPLICABLE = {
    "test_fit": "builds an unfitted estimator's private state by hand (coefs_, velocities, "
                "_coef_grads) and expects partial_fit to continue from it; gpunn's network "
                "is model_, built by fit (replacing coefs_ after fit is honoured: "
                "test_sklearn.py)",
    "test_gradient": "compares scikit-learn's private _backprop/_pack/_unpack with finite "
                     "differences (gpunn's gradients: gn.gradcheck in test_layers.py and "
                     "test_model.py; test_sklearn.py checks SGD against scikit-learn to "
                     "1e-10)",
}


def _swap(value):
    if isinstance(value, type) and value in SWAP:
        return SWAP[value]
    if isinstance(value, (list, tuple)):
        return type(value)(_swap(v) for v in value)
    if hasattr(value, "values") and hasattr(value, "marks") and hasattr(value, "id"):
        return pytest.param(*_swap(value.values), marks=value.marks, id=value.id)
    return value


def _marks(fn):
    marks = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            args = list(mark.args)
            args[1] = _swap(list(args[1]))
            mark = getattr(pytest.mark, mark.name)(*args, **mark.kwargs)
        else:
            mark = getattr(pytest.mark, mark.name)(*mark.args, **mark.kwargs)
        marks.append(mark)
    return marks


def _port(name, fn):
    namespace = dict(fn.__globals__, MLPClassifier=ours.MLPClassifier,
                     MLPRegressor=ours.MLPRegressor)
    ported = types.FunctionType(fn.__code__, namespace, name, fn.__defaults__,
                                fn.__closure__)
    ported.__kwdefaults__ = fn.__kwdefaults__
    for mark in _marks(fn):
        ported = mark(ported)
    if name in NOT_APPLICABLE:
        ported = pytest.mark.skip(reason=NOT_APPLICABLE[name])(ported)
    return ported


@pytest.fixture
def global_random_seed():
    return 42  # scikit-learn's default for this fixture


for _name in dir(sk_mlp):
    if _name.startswith("test_") and callable(getattr(sk_mlp, _name)):
        globals()[_name] = _port(_name, getattr(sk_mlp, _name))


def test_the_port_found_scikit_learns_tests():
    ported = [n for n in globals() if n.startswith("test_") and n != __name__]
    assert len(ported) >= 40
