"""scikit-learn estimators trained by gpunn's loop, by one process or (run under
``mpiexec -n 2 python -m mpi4py sklearn_cases.py OUT``) by several ranks, each rank
writing its weights and history to ``OUT/<case>-rank<r>.npz`` (tests/test_sklearn.py)."""

import os
import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from gpunn.sklearn import MLPClassifier, MLPRegressor

#: name -> (estimator, sample weights?). 145 rows at batch 16: a last batch of one row,
#: fewer rows than ranks (the other rank steps on a weight-0 stand-in).
CASES = {
    "sgd-weighted-tail": (lambda: MLPClassifier((7,), activation="tanh", solver="sgd",
                                                alpha=0.01, batch_size=16, max_iter=12,
                                                learning_rate_init=0.05, random_state=3),
                          True),
    "adam-early-stopping": (lambda: MLPRegressor(hidden_layer_sizes=(6,), solver="adam", alpha=1e-3,
                                                 batch_size=16, max_iter=15,
                                                 early_stopping=True, n_iter_no_change=3,
                                                 learning_rate_init=0.02, random_state=1),
                            False),
    # No random_state: rank 0's draws (weights, shuffles) are every rank's.
    "sgd-unseeded": (lambda: MLPClassifier((5,), solver="sgd", batch_size=16, max_iter=5),
                     False),
}


def data(rows: int = 145):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 4))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
    w = rng.uniform(0.2, 3.0, rows)
    return X, y, w


def train(name: str):
    make, weighted = CASES[name]
    X, y, w = data()
    est = make()
    if isinstance(est, MLPRegressor):
        y = X[:, 0] - 2 * X[:, 1] * X[:, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, sample_weight=w if weighted else None)


if __name__ == "__main__":
    import gpunn as gn

    out = sys.argv[1]
    world = gn.distributed.init()
    assert world.size > 1, "launch with mpiexec -n 2 or more"
    for name in CASES:
        est = train(name)
        np.savez(os.path.join(out, f"{name}-rank{world.rank}.npz"),
                 params=np.concatenate([np.ravel(a) for a in est.coefs_ + est.intercepts_]),
                 loss=np.array(est.loss_curve_), n_iter=est.n_iter_,
                 scores=np.array(est.validation_scores_ or []))
