"""The public estimators: scikit-learn's signatures, attributes and methods."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import (
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._base import _STOCHASTIC, BaseMLP
from ._params import check_params
from ._params import sample_weight as sample_weight_checked

_DOC_PARAMS = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default (100,)
    activation : {"identity", "logistic", "tanh", "relu"}, default "relu"
    solver : {"lbfgs", "sgd", "adam"}, default "adam"
        ``"lbfgs"`` runs SciPy's L-BFGS-B on the full-batch loss (each evaluation on
        ``device``).
    alpha : float, default 1e-4
        L2 penalty ``alpha / (2 n) ||W||^2`` per batch of ``n`` samples (weights only).
    batch_size : int or "auto", default "auto"
        ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        SGD only: ``learning_rate_init / (t + 1) ** power_t`` after each epoch over ``t``
        samples seen, or divided by 5 each time ``n_iter_no_change`` epochs bring no
        improvement.
    learning_rate_init : float, default 1e-3
    power_t : float, default 0.5
    max_iter : int, default 200
        Epochs (stochastic solvers) or iterations (L-BFGS).
    shuffle : bool, default True
    random_state : int, RandomState or None
        Initial weights, shuffling and the early-stopping split, drawn as scikit-learn
        draws them.
    tol : float, default 1e-4
    verbose : bool, default False
    warm_start : bool, default False
    momentum : float, default 0.9
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the data (stratified for binary targets), stop
        when its score has not improved by ``tol`` for ``n_iter_no_change`` epochs, and
        keep the best epoch's weights.
    validation_fraction : float, default 0.1
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
    n_iter_no_change : int, default 10
    max_fun : int, default 15000
        L-BFGS only: the most loss evaluations.
    device : str, default "cpu"
        gpunn's: ``"auto"`` for the best device, ``"cuda"``, ``"cuda:1"``.
    dtype : {None, "float32", "float64"}, default None
        gpunn's: the network's precision; None follows ``X`` (as scikit-learn does).
        ``"float32"`` is much faster on GPUs.
    dropout : float, default 0
        gpunn's: dropout probability between hidden layers (stochastic solvers).

    Attributes
    ----------
    coefs_, intercepts_ : list of arrays
        ``(fan_in, fan_out)`` weights and ``(fan_out,)`` intercepts per layer.
    loss_, best_loss_ : float
    loss_curve_ : list of float
        Stochastic solvers.
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    n_iter_ : int
    t_ : int
        Training samples seen.
    n_layers_, n_outputs_ : int
    out_activation_ : str
    n_features_in_ : int
    feature_names_in_ : array of str
        When ``X`` has string column names.
    model_ : gpunn.Sequential
        The trained network (save it with ``model_.save``).
"""

_COMMON = dict(hidden_layer_sizes=(100,), activation="relu", solver="adam", alpha=0.0001,
               batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
               power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
               verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
               early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
               epsilon=1e-8, n_iter_no_change=10, max_fun=15000, device="cpu", dtype=None,
               dropout=0.0)


def _stochastic(est) -> bool:
    if est.solver not in _STOCHASTIC:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers; "
                             f"{est.solver!r} is not stochastic")
    return True


def _set_params(est, values: dict) -> None:
    for key in _COMMON:
        setattr(est, key, values[key])


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = ("A multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, "
               "trained by gpunn.\n" + _DOC_PARAMS + """    classes_ : array
        The class labels (for multilabel targets, ``0 .. n_labels - 1``).
""")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, device="cpu", dtype=None, dropout=0.0):
        _set_params(self, locals())

    def _loss_name(self) -> str:
        return "binary_log_loss" if self.out_activation_ == "logistic" else "log_loss"

    def _stratify(self) -> bool:
        return self.n_outputs_ == 1  # scikit-learn stratifies binary targets only

    def _decode(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _score(self, X, y, sample_weight=None) -> float:
        pred = self._predict_raw(X)
        if not np.isfinite(pred).all():
            return np.nan
        return accuracy_score(y, self._labels(pred), sample_weight=sample_weight)

    def _prepare(self, X, y, sample_weight, incremental: bool):
        sizes = check_params(self)
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=first, accept_sparse=["csr", "csc"])
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError(f"{type(self).__name__}: warm_start can only be used where "
                                 "`y` has the same classes as in the previous call to fit. "
                                 f"Previously got {self.classes_}, `y` has {classes}")
            if len(np.setdiff1d(classes, self.classes_)):
                raise ValueError(f"{type(self).__name__}: `y` has classes not in "
                                 f"`self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        # Booleans, as scikit-learn: the early-stopping split stratifies on them.
        Y = self._label_binarizer.transform(y).astype(bool)
        if first:
            self.out_activation_ = "softmax" if self._label_binarizer.y_type_ == \
                "multiclass" else "logistic"
        sw = sample_weight_checked(self, sample_weight, X)
        return X, Y, sw, first, sizes

    def fit(self, X, y, sample_weight=None):
        """Train on ``X (n_samples, n_features)`` and labels ``y (n_samples,)`` (or a
        multilabel indicator matrix ``(n_samples, n_labels)``)."""
        from sklearn.utils import check_random_state

        X, Y, sw, first, sizes = self._prepare(X, y, sample_weight, incremental=False)
        self._random_state = check_random_state(self.random_state)
        self._fit(X, Y, sw, False, first, sizes)
        return self

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``; ``classes`` (all labels) is required on the first
        call."""
        from sklearn.utils import check_random_state

        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer().fit(
                y if type_of_target(y).startswith("multilabel") else classes)
        X, Y, sw, first, sizes = self._prepare(X, y, sample_weight, incremental=True)
        self._random_state = check_random_state(self.random_state)
        self._fit(X, Y, sw, True, not hasattr(self, "model_"), sizes)
        return self

    def _predict_raw(self, X):
        return self._forward(X)

    def _labels(self, P):
        return self._label_binarizer.inverse_transform(P[:, 0] if P.shape[1] == 1 else P)

    def predict(self, X):
        """The predicted class of each sample (or label indicators when multilabel)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                          accept_sparse=["csr", "csc"])
        return self._labels(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)`` in ``classes_`` order."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                          accept_sparse=["csr", "csc"])
        p = self._forward(X)
        return np.hstack([1.0 - p, p]) if p.shape[1] == 1 else p

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        p = self.predict_proba(X)
        return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = ("A multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` "
               "(half squared error, or half Poisson deviance with ``loss='poisson'``), "
               "trained by gpunn.\n" + _DOC_PARAMS)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, device="cpu", dtype=None, dropout=0.0):
        self.loss = loss
        _set_params(self, locals())

    def _loss_name(self) -> str:
        return self.loss

    def _stratify(self) -> bool:
        return False

    def _decode(self, Y):
        return Y[:, 0] if Y.shape[1] == 1 else Y

    def _score(self, X, y, sample_weight=None) -> float:
        pred = self._decode(self._forward(X))
        if not np.isfinite(pred).all():
            return np.nan
        return r2_score(y, pred, sample_weight=sample_weight)

    def _prepare(self, X, y, sample_weight, incremental: bool):
        sizes = check_params(self)
        if self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"MLPRegressor: loss must be 'squared_error' or 'poisson', got "
                             f"{self.loss!r}")
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=first,
                             accept_sparse=["csr", "csc"])
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (np.any(y < 0) or np.sum(y) <= 0):
            raise ValueError("MLPRegressor: loss='poisson' needs y >= 0 with a positive sum")
        if first:
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        Y = np.asarray(y, dtype=X.dtype).reshape(len(y), -1)
        sw = sample_weight_checked(self, sample_weight, X)
        return X, Y, sw, first, sizes

    def fit(self, X, y, sample_weight=None):
        """Train on ``X (n_samples, n_features)`` and targets ``y (n_samples,)`` or
        ``(n_samples, n_targets)``."""
        from sklearn.utils import check_random_state

        X, Y, sw, first, sizes = self._prepare(X, y, sample_weight, incremental=False)
        self._random_state = check_random_state(self.random_state)
        self._fit(X, Y, sw, False, first, sizes)
        return self

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``."""
        from sklearn.utils import check_random_state

        X, Y, sw, first, sizes = self._prepare(X, y, sample_weight, incremental=True)
        self._random_state = check_random_state(self.random_state)
        self._fit(X, Y, sw, True, not hasattr(self, "model_"), sizes)
        return self

    def predict(self, X):
        """Predicted targets, ``(n_samples,)`` or ``(n_samples, n_targets)``."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                          accept_sparse=["csr", "csc"])
        return self._decode(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
