"""Checks of the estimators' parameters, with errors that name the public class."""

from __future__ import annotations

import numbers

import numpy as np

#: scikit-learn's hidden activations and gpunn's names for them.
HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _check(est, name, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{type(est).__name__}: {name} must be {expected}, got "
                         f"{getattr(est, name)!r}")


def _real(v, low=None, high=None, low_open=False, high_open=False) -> bool:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
        return False
    if low is not None and (v <= low if low_open else v < low):
        return False
    return high is None or (v < high if high_open else v <= high)


def dense(X):
    """Sparse input as a dense array (the network's matmuls are dense), else ``X``."""
    return X.toarray() if hasattr(X, "toarray") else X


def _integer(v, low) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def check_params(est) -> list:
    """Raise a ``ValueError`` naming the estimator class for an invalid parameter; return
    the hidden layer sizes as a list."""
    sizes = est.hidden_layer_sizes
    listed = isinstance(sizes, (list, tuple, np.ndarray))  # not a one-use generator
    sizes = list(sizes) if listed else [sizes]
    _check(est, "hidden_layer_sizes", all(_integer(s, 1) for s in sizes),
           "positive integers (an int, list, tuple or array)")
    state = est.random_state
    _check(est, "random_state", state is None or _integer(state, 0) and state < 2**32
           or isinstance(state, np.random.RandomState),
           "None, an integer in [0, 2**32) or a numpy RandomState")
    _check(est, "activation", est.activation in HIDDEN, f"one of {sorted(HIDDEN)}")
    _check(est, "solver", est.solver in ("lbfgs", "sgd", "adam"), "'lbfgs', 'sgd' or 'adam'")
    _check(est, "alpha", _real(est.alpha, 0), "a real >= 0")
    _check(est, "batch_size", est.batch_size == "auto" or _integer(est.batch_size, 1),
           "'auto' or a positive integer")
    _check(est, "learning_rate", est.learning_rate in ("constant", "invscaling", "adaptive"),
           "'constant', 'invscaling' or 'adaptive'")
    _check(est, "learning_rate_init", _real(est.learning_rate_init, 0, low_open=True),
           "a real > 0")
    _check(est, "power_t", _real(est.power_t, 0), "a real >= 0")
    _check(est, "max_iter", _integer(est.max_iter, 1), "an integer >= 1")
    _check(est, "tol", _real(est.tol, 0), "a real >= 0")
    _check(est, "momentum", _real(est.momentum, 0, 1), "a real in [0, 1]")
    _check(est, "validation_fraction", _real(est.validation_fraction, 0, 1, True, True),
           "a real in (0, 1)")
    for name in ("beta_1", "beta_2"):
        _check(est, name, _real(getattr(est, name), 0, 1, high_open=True), "a real in [0, 1)")
    _check(est, "epsilon", _real(est.epsilon, 0, low_open=True), "a real > 0")
    _check(est, "n_iter_no_change", _integer(est.n_iter_no_change, 1)
           or est.n_iter_no_change == np.inf, "an integer >= 1 or inf")
    _check(est, "max_fun", _integer(est.max_fun, 1), "an integer >= 1")
    _check(est, "dropout", _real(est.dropout, 0, 1, high_open=True), "a real in [0, 1)")
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
        _check(est, name, isinstance(getattr(est, name), (bool, np.bool_)), "True or False")
    _check(est, "dtype", est.dtype in (None, "float32", "float64", np.float32, np.float64),
           "None, 'float32' or 'float64'")
    if est.solver == "lbfgs" and est.dropout:
        raise ValueError(f"{type(est).__name__}: dropout needs a stochastic solver ('sgd' or "
                         "'adam'); L-BFGS minimises a deterministic loss")
    return [int(s) for s in sizes]


def sample_weight(est, sample_weight, X):
    """scikit-learn's checked sample weights, refusing negative ones (a negative weight
    makes its samples' loss a gain, maximised without bound)."""
    from sklearn.utils.validation import _check_sample_weight

    if sample_weight is None:
        return None
    sw = _check_sample_weight(sample_weight, X)
    if (sw < 0).any():
        at = int(np.flatnonzero(sw < 0)[0])
        raise ValueError(f"{type(est).__name__}: sample_weight must be >= 0, got "
                         f"{float(sw[at])!r} at index {at}")
    return sw
