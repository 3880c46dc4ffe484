"""The small CNN of ``examples/digits_cnn.json`` on scikit-learn's 8x8 digits, held out.

For each seed: a stratified split of 75% training and 25% test images, the network trained
for a fixed number of epochs (Adam 1e-3, batch 64, no model selection on the test rows),
then its test accuracy. Prints each seed's accuracy and their mean.

    python bench/digits_cnn.py [--epochs 20] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

import gpunn as gn

NETWORK = pathlib.Path(__file__).parents[1] / "examples" / "digits_cnn.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        print("digits_cnn.py: needs scikit-learn: pip install scikit-learn", file=sys.stderr)
        return 2
    digits = load_digits()
    X, y = (digits.images / 16.0)[:, None].astype(np.float32), digits.target
    scores = []
    for seed in args.seeds:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed,
                                              stratify=y)
        model = gn.Sequential.from_architecture(json.loads(NETWORK.read_text()),
                                                device="cpu", seed=seed)
        model.fit(Xtr, ytr, loss="cross_entropy", optimizer=gn.optim.Adam(lr=1e-3),
                  epochs=args.epochs, batch_size=64, verbose=0, seed=seed)
        scores.append(model.evaluate(Xte, yte)["accuracy"])
        print(f"seed {seed}: test accuracy {scores[-1]:.4f} ({len(yte)} images)", flush=True)
    print(f"mean {np.mean(scores):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
