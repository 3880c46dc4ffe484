"""Data: toy datasets generated in code, a train/test split, the user's files, built-ins.

- :mod:`gpunn.data.synthetic`: XOR, moons, circles, spirals, blobs, linear (host arrays,
  deterministic given ``seed``) and ``train_test_split``; re-exported here.
- :mod:`gpunn.data.tables`: CSV/NPZ files read into a :class:`~gpunn.data.tables.Dataset`.
- :mod:`gpunn.data.builtin`: the command line's named datasets (toys, iris, digits,
  (Fashion-)MNIST with a checked download cache).
"""

from .synthetic import (
    DATASETS,
    load,
    make_blobs,
    make_circles,
    make_linear,
    make_moons,
    make_spirals,
    make_xor,
    train_test_split,
)

__all__ = ["make_xor", "make_moons", "make_circles", "make_spirals", "make_blobs",
           "make_linear", "load", "train_test_split", "DATASETS"]
