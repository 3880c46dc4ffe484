"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, trained by gpunn on the CPU or a
GPU.

Drop-in: the same constructor parameters with the same meanings and defaults
(``hidden_layer_sizes=(100,)``, ``solver="adam"``, ``alpha=1e-4``, ``batch_size="auto"``,
``max_iter=200``, ``early_stopping``, ``learning_rate="adaptive"`` for SGD, ``"lbfgs"``
through SciPy, ...), the same fitted attributes (``coefs_``, ``intercepts_``, ``loss_``,
``loss_curve_``, ``n_iter_``, ``t_``, ``out_activation_``, ...), ``partial_fit``,
``sample_weight`` and the same warnings, plus gpunn's own ``device``, ``dtype`` and
``dropout``. The maths is scikit-learn's (Glorot-uniform initialisation drawn from
``random_state`` in the same order, half squared error, L2 penalty
``alpha / (2 n) ||W||^2``); see :mod:`gpunn.sklearn._base` for the few differences.
"""

try:
    import sklearn  # noqa: F401
except ImportError:  # one line that says what to do, not a bare ModuleNotFoundError
    raise ImportError('gpunn.sklearn needs scikit-learn: pip install "gpunn[sklearn]"') \
        from None

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
