"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` backed by gpunn.

They follow scikit-learn's conventions (``fit``/``predict``/``predict_proba``/``score``,
``get_params``/``set_params``, input validation, ``n_features_in_``, ``classes_``) and pass
``sklearn.utils.estimator_checks.check_estimator``. Training runs on ``device`` (``"cpu"``
by default so results are reproducible anywhere; ``"auto"`` picks a GPU). A fitted
estimator pickles to a device-independent state and unpickles onto the CPU.
"""

from __future__ import annotations

import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError:  # one line that says what to do, not a bare ModuleNotFoundError
    raise ImportError('gpunn.sklearn needs scikit-learn: pip install "gpunn[sklearn]"') \
        from None

from . import io as _io
from . import optim as _optim
from .backend import host_array
from .model import Sequential
from .preprocessing import Standardizer


class _MLP(BaseEstimator):
    """Shared parameters and training of the two estimators."""

    def __init__(self, hidden_layer_sizes=(64,), activation="relu", optimizer="adam",
                 learning_rate=1e-3, weight_decay=0.0, epochs=200, batch_size=32,
                 standardize=True, device="cpu", dtype="float64", random_state=None,
                 verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.standardize = standardize
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _seed(self) -> int:
        rs = self.random_state
        if rs is None:
            return int(np.random.default_rng().integers(2**31))
        if isinstance(rs, numbers.Integral):
            return int(rs)
        return int(rs.randint(2**31))  # a numpy RandomState, as scikit-learn passes

    def _fit_model(self, X, y, outputs: int, out_activation, loss):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        sizes = [int(s) for s in sizes]
        widths = [X.shape[1], *sizes, outputs]
        arch = [{"input_dim": a, "output_dim": b, "activation": self.activation}
                for a, b in zip(widths[:-2], widths[1:-1])]
        arch.append({"input_dim": widths[-2], "output_dim": widths[-1],
                     "activation": out_activation})
        seed = self._seed()
        model = Sequential.from_architecture(arch, device=self.device, dtype=self.dtype,
                                             seed=seed)
        if self.standardize:
            model.preprocessor = Standardizer().fit(X)
        opt = _optim.get(self.optimizer, lr=self.learning_rate,
                         weight_decay=self.weight_decay)
        hist = model.fit(X, y, loss=loss, optimizer=opt, epochs=self.epochs,
                         batch_size=min(self.batch_size, len(X)), verbose=self.verbose,
                         seed=seed)
        self.model_ = model
        self.loss_curve_ = list(hist.history["loss"])
        self.n_iter_ = len(hist.epoch)
        return self

    def _output(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return np.asarray(host_array(self.model_.predict(X)), dtype=np.float64)

    def __getstate__(self):
        state = self.__dict__.copy()
        if "model_" in state:
            # Weights and optimiser state as a gpunn model file: no device objects.
            state["model_"] = _io.dumps(state["model_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), bytes):
            state["model_"] = _io.loads(state["model_"], device="cpu")
        self.__dict__.update(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class MLPClassifier(ClassifierMixin, _MLP):
    """A dense network classifier (softmax output; sigmoid for two classes).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (64,)
    activation : str, default "relu"
        Any gpunn activation for the hidden layers.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"}, default "adam"
    learning_rate : float, default 1e-3
    weight_decay : float, default 0
    epochs : int, default 200
    batch_size : int, default 32
    standardize : bool, default True
        Standardise features with statistics of the training data.
    device : str, default "cpu"
    dtype : str, default "float64"
        scikit-learn's precision, so predictions do not depend on how many rows are
        predicted at once; ``"float32"`` is much faster on GPUs.
    random_state : int, RandomState or None
    verbose : int, default 0

    Attributes
    ----------
    classes_ : (n_classes,) array
    model_ : gpunn.Sequential
    loss_curve_ : list of float
    n_features_in_ : int
    """

    def fit(self, X, y):
        """Train on ``X (n_samples, n_features)`` and labels ``y (n_samples,)``."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) == 1:
            raise ValueError(f"MLPClassifier: y has 1 class ({self.classes_[0]!r}); a "
                             "classifier needs at least 2 classes")
        if len(self.classes_) == 2:
            return self._fit_model(X, y_idx, 1, "sigmoid", "binary_crossentropy")
        return self._fit_model(X, y_idx, len(self.classes_), "softmax",
                               "categorical_crossentropy")

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n_samples, n_classes)``, columns in ``classes_`` order."""
        p = self._output(X)
        return np.hstack([1.0 - p, p]) if p.shape[1] == 1 else p

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample."""
        proba = self.predict_proba(X)  # first: it checks that the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _MLP):
    """A dense network regressor (identity output, mean squared error).

    Parameters are those of :class:`MLPClassifier`. ``y`` may be ``(n_samples,)`` or
    ``(n_samples, n_targets)``.
    """

    def fit(self, X, y):
        """Train on ``X (n_samples, n_features)`` and targets ``y``."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True,
                             y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        outputs = 1 if y.ndim == 1 else y.shape[1]
        return self._fit_model(X, y, outputs, None, "mse")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = False
        return tags

    def predict(self, X) -> np.ndarray:
        """Predicted targets, ``(n_samples,)`` or ``(n_samples, n_targets)``."""
        out = self._output(X)
        return out[:, 0] if self._y_1d else out
