"""A real file end to end through the command line, beside scikit-learn's MLPClassifier on
the same split.

    python bench/cli_vs_sklearn.py [--dataset breast_cancer] [--out DIR]

Writes scikit-learn's bundled data set as ``train.csv`` / ``test.csv`` (75/25, stratified,
``random_state=0``; the target as its class names, so the reader maps text labels), runs
``gpunn train --data train.csv --target target --save model.npz`` and
``gpunn predict model.npz --data test.csv``, and scores the predictions against the test
labels; scikit-learn's ``make_pipeline(StandardScaler(), MLPClassifier(random_state=0))``
gets the same rows. Prints both accuracies and the commands.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _write(path: Path, names, X, labels) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, "target"])
        writer.writerows([*map(repr, map(float, row)), label] for row, label in zip(X, labels))


def _gpunn(*args) -> str:
    cmd = [sys.executable, "-m", "gpunn", *map(str, args)]
    print("$ gpunn " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(out.stderr)
    sys.stderr.write(out.stderr)
    return out.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breast_cancer",
                        choices=["breast_cancer", "wine", "iris", "digits"])
    parser.add_argument("--out", help="folder for the CSV files and the model "
                        "(default: a temporary one)")
    args = parser.parse_args(argv)
    bunch = getattr(datasets, f"load_{args.dataset}")()
    labels = np.asarray(bunch.target_names)[bunch.target]
    names = [str(n) for n in getattr(bunch, "feature_names", range(bunch.data.shape[1]))]
    X_tr, X_te, y_tr, y_te = train_test_split(bunch.data, labels, test_size=0.25,
                                              random_state=0, stratify=labels)
    folder = Path(args.out or tempfile.mkdtemp(prefix="gpunn-cli-"))
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "train.csv", names, X_tr, y_tr)
    _write(folder / "test.csv", names, X_te, np.full(len(y_te), ""))
    print(_gpunn("train", "--data", folder / "train.csv", "--target", "target", "--quiet",
                 "--save", folder / "model.npz"), end="")
    lines = _gpunn("predict", folder / "model.npz", "--data", folder / "test.csv")
    guessed = np.array([row[0] for row in csv.reader(lines.splitlines()[1:])])
    ours = float(np.mean(guessed == y_te))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = make_pipeline(StandardScaler(), MLPClassifier(random_state=0)).fit(X_tr, y_tr)
    theirs = float(ref.score(X_te, y_te))
    print(f"{args.dataset}: {len(X_tr)} train / {len(X_te)} test rows, {X_tr.shape[1]} "
          f"features; test accuracy gpunn CLI {ours:.3f}, scikit-learn MLPClassifier "
          f"{theirs:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
