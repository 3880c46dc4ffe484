"""Handwritten digits (MNIST) with a one-hidden-layer network.

Shows: reading MNIST's IDX files with ``gpunn.data.builtin.load_mnist``, a softmax
classifier trained on integer labels, one line per epoch from ``fit``, and the accuracy
on the official 10,000 test images.

This script never downloads. It looks for the four IDX files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
gzipped or not) in ``--data-dir``, else in gpunn's cache (``~/.cache/gpunn/mnist`` or
``$GPUNN_CACHE/mnist``), where ``gpunn train --dataset mnist`` downloads them once. When
they are missing it says so and exits without error.

Run it with ``python examples/mnist.py [--data-dir FOLDER] [--epochs N]`` (a few
seconds on a laptop CPU). ``GPUNN_EXAMPLE_QUICK=1`` trains one epoch on 10,000 images.
"""

import argparse
import os
import sys
from pathlib import Path

import gpunn as gn
from gpunn.data.builtin import MNIST_FILES, cache_dir, load_mnist

QUICK = os.environ.get("GPUNN_EXAMPLE_QUICK") == "1"


def missing_files(folder):
    """Names of the MNIST files that are in ``folder`` neither gzipped nor unpacked.

    Parameters
    ----------
    folder : pathlib.Path

    Returns
    -------
    list of str
    """
    return [name for name in MNIST_FILES["mnist"]["files"]
            if not (folder / name).exists() and not (folder / name[:-3]).exists()]


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", type=Path, help="folder holding the four MNIST IDX files")
parser.add_argument("--epochs", type=int, default=1 if QUICK else 5)
args = parser.parse_args()

folder = args.data_dir or cache_dir() / "mnist"
missing = missing_files(folder)
if missing:
    # Not an error: the example is optional, and the test suite runs it on machines
    # without the data (and without network access).
    print(f"MNIST not found in {folder} ({len(missing)} of 4 IDX files missing, e.g. "
          f"{missing[0]}); pass --data-dir, or run 'gpunn train --dataset mnist' once to "
          "download them")
    sys.exit(0)

# Files in the cache are checked against their SHA-256; pixels come scaled to [0, 1].
data = load_mnist("mnist", data_dir=args.data_dir, download=False)
X, y = (data.X[:10_000], data.y[:10_000]) if QUICK else (data.X, data.y)

model = gn.Sequential([gn.Dense(784, 128, activation="relu"),
                       gn.Dense(128, 10, activation="softmax")], seed=0)
# Softmax output with cross-entropy is computed as one fused step; labels stay integers.
model.fit(X, y, loss="categorical_crossentropy", optimizer=gn.optim.Adam(lr=1e-3),
          epochs=args.epochs, batch_size=128, seed=0)

scores = model.evaluate(data.X_test, data.y_test)
print(f"test accuracy: {scores['accuracy']:.4f} on {len(data.y_test):,} images")
