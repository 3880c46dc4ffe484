"""gpunn.sklearn against scikit-learn's own MLP on scikit-learn's bundled data sets: test
accuracy (R² for regression) and fit time, side by side, interleaved, same settings.

    python bench/sklearn_compare.py [--seeds 3] [--markdown bench/results/sklearn.md]

Each data set is split 75/25 (stratified for classes, ``random_state=0``) and standardised
on the training part; both estimators get the same parameters (scikit-learn's defaults
plus ``max_iter=300``, one ``random_state`` per seed) on the CPU in float64. The table
gives the mean score over seeds and the median fit time; "time ratio" is
scikit-learn's time over gpunn's (above 1: gpunn is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np
from sklearn import datasets
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import gpunn
from gpunn import sklearn as gn_sk

DATA = [("iris", datasets.load_iris, "classify"), ("wine", datasets.load_wine, "classify"),
        ("breast_cancer", datasets.load_breast_cancer, "classify"),
        ("digits", datasets.load_digits, "classify"),
        ("diabetes", datasets.load_diabetes, "regress")]


def _split(load, task):
    X, y = load(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y if task == "classify" else None)
    if task == "regress":
        scale = y_tr.std()
        y_tr, y_te = y_tr / scale, y_te / scale
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


def _run(cls, seed, data):
    X_tr, X_te, y_tr, y_te = data
    est = cls(max_iter=300, random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_tr, y_tr)
    return est.score(X_te, y_te), time.perf_counter() - t0, est.n_iter_


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--markdown", help="also write the table here")
    args = parser.parse_args(argv)
    rows = ["| data set | rows x features | metric | scikit-learn | gpunn | sklearn s | "
            "gpunn s | time ratio | epochs (sklearn / gpunn) |", "|---" * 9 + "|"]
    for name, load, task in DATA:
        data = _split(load, task)
        pair = ((sk.MLPClassifier, gn_sk.MLPClassifier) if task == "classify" else
                (sk.MLPRegressor, gn_sk.MLPRegressor))
        res = {0: [], 1: []}
        for seed in range(args.seeds):
            for k in (0, 1) if seed % 2 == 0 else (1, 0):  # interleaved, order alternating
                res[k].append(_run(pair[k], seed, data))
        score = [np.mean([r[0] for r in res[k]]) for k in (0, 1)]
        secs = [statistics.median(r[1] for r in res[k]) for k in (0, 1)]
        iters = [round(np.mean([r[2] for r in res[k]])) for k in (0, 1)]
        n, f = len(data[0]) + len(data[1]), data[0].shape[1]
        rows.append(f"| {name} | {n} x {f} | {'accuracy' if task == 'classify' else 'R²'} | "
                    f"{score[0]:.3f} | {score[1]:.3f} | {secs[0]:.2f} | {secs[1]:.2f} | "
                    f"{secs[0] / secs[1]:.2f}x | {iters[0]} / {iters[1]} |")
        print(rows[-1], flush=True)
    import sklearn

    foot = (f"\nCPU, float64, {args.seeds} seeds; scikit-learn {sklearn.__version__}, "
            f"gpunn {gpunn.__version__}, NumPy {np.__version__}, Python "
            f"{sys.version.split()[0]}. Command: python bench/sklearn_compare.py "
            f"--seeds {args.seeds}\n")
    text = "\n".join(rows) + "\n" + foot
    print(foot)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
