"""gpunn inside a scikit-learn ``Pipeline``, cross-validated.

Shows: ``gpunn.sklearn.MLPClassifier`` behind a ``StandardScaler`` in a ``Pipeline``,
scored by 5-fold cross-validation and then on a held-out test set, on scikit-learn's
bundled breast-cancer data (30 features on very different scales; nothing is
downloaded).

Needs scikit-learn: ``pip install "gpunn[sklearn]"``. Run it with
``python examples/sklearn_pipeline.py`` (several seconds on a laptop CPU).
``GPUNN_EXAMPLE_QUICK=1`` uses a third of the rows and 3 folds.
"""

import os

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gpunn.sklearn import MLPClassifier

QUICK = os.environ.get("GPUNN_EXAMPLE_QUICK") == "1"

X, y = load_breast_cancer(return_X_y=True)
if QUICK:
    X, y = X[::3], y[::3]  # a third of the rows: each fit runs a third of the steps
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                    random_state=0)

# In a pipeline the scaler learns its means and scales from the training folds only:
# cross-validation refits every step per fold, so no test statistics leak in.
# tol is looser than the default 1e-4: on 400 rows Adam's loss keeps creeping down for all
# 200 epochs, and each fit would end in a ConvergenceWarning (scikit-learn's own
# MLPClassifier warns the same way) for scores within a point of these (0.986 and 0.958).
pipeline = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,),
                                                         tol=5e-4, random_state=0))

scores = cross_val_score(pipeline, X_train, y_train, cv=3 if QUICK else 5)
print(f"cross-validated accuracy: {scores.mean():.3f} ± {scores.std():.3f} "
      f"({len(scores)} folds)")
pipeline.fit(X_train, y_train)
print(f"test accuracy: {pipeline.score(X_test, y_test):.3f} on {len(y_test)} samples")
