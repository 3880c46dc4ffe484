"""Built-in datasets generated in code (no downloads) and a train/test split.

All generators return host NumPy arrays ``X (n, features)`` float32 and ``y (n,)``
(int64 class labels, or float32 for regression), and are deterministic given ``seed``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import unknown_name


def _rng(seed):
    return np.random.default_rng(seed)


def _check(name: str, n=None, noise=0.0, seed=None, **positive) -> None:
    """Every generator's arguments, before anything is drawn: ``n`` a positive integer,
    ``noise`` a finite number >= 0, ``seed`` None or an integer >= 0, and the named
    ``positive`` ones finite numbers > 0 (integers where they count things)."""
    from ..backend.random import check_seed

    def fail(arg, value, expected):
        raise ValueError(f"{name} {arg}: expected {expected}, got {value!r}")

    def integer(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    if n is not None and not (integer(n) and 0 < n <= 10**9):
        fail("n", n, "a positive integer")
    if not (real(noise) and noise >= 0):
        fail("noise", noise, "a finite number >= 0")
    for arg, value in positive.items():
        counts = arg in ("classes", "features")
        if not ((integer(value) if counts else real(value)) and value > 0):
            fail(arg, value, "a positive integer" if counts else "a finite number > 0")
    check_seed(seed, f"{name} seed")


def make_xor(n: int = 4, noise: float = 0.0, seed: int | None = 0):
    """XOR truth table (``n=4``) or ``n`` noisy samples around its four corners."""
    _check("make_xor", n, noise, seed)
    base = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    idx = np.arange(n) % 4
    X = base[idx] + noise * _rng(seed).standard_normal((n, 2)).astype(np.float32)
    return X.astype(np.float32), labels[idx]


def make_moons(n: int = 1000, noise: float = 0.1, seed: int | None = 0):
    """Two interleaving half circles (binary), as scikit-learn's ``make_moons``."""
    _check("make_moons", n, noise, seed)
    rng = _rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], 1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    X = X + noise * rng.standard_normal(X.shape)
    perm = rng.permutation(n)
    return X[perm].astype(np.float32), y[perm]


def make_circles(n: int = 1000, noise: float = 0.05, factor: float = 0.5,
                 seed: int | None = 0):
    """A small circle inside a large one (binary)."""
    _check("make_circles", n, noise, seed, factor=factor)
    rng = _rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t = rng.uniform(0, 2 * np.pi, n)
    r = np.concatenate([np.ones(n_out), np.full(n_in, factor)])
    X = np.stack([r * np.cos(t), r * np.sin(t)], 1) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    perm = rng.permutation(n)
    return X[perm].astype(np.float32), y[perm]


def make_spirals(n: int = 1500, classes: int = 3, noise: float = 0.2, seed: int | None = 0):
    """``classes`` interleaved spiral arms (the CS231n toy set), multiclass."""
    _check("make_spirals", n, noise, seed, classes=classes)
    rng = _rng(seed)
    per = np.full(classes, n // classes)
    per[: n % classes] += 1
    Xs, ys = [], []
    for k, m in enumerate(per):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(k * 4.0, (k + 1) * 4.0, m) + noise * rng.standard_normal(m)
        Xs.append(np.stack([r * np.sin(t), r * np.cos(t)], 1))
        ys.append(np.full(m, k, np.int64))
    X, y = np.concatenate(Xs), np.concatenate(ys)
    perm = rng.permutation(n)
    return X[perm].astype(np.float32), y[perm]


def make_blobs(n: int = 600, classes: int = 3, features: int = 4, spread: float = 1.0,
               seed: int | None = 0):
    """Gaussian clusters around random centres: an iris-like multiclass set."""
    _check("make_blobs", n, 0.0, seed, classes=classes, features=features, spread=spread)
    rng = _rng(seed)
    centres = rng.uniform(-5, 5, (classes, features))
    y = np.arange(n) % classes
    X = centres[y] + spread * rng.standard_normal((n, features))
    perm = rng.permutation(n)
    return X[perm].astype(np.float32), y[perm].astype(np.int64)


def make_linear(n: int = 1000, coef=(2.0, -1.0, 5.0), noise: float = 0.0,
                seed: int | None = 0):
    """Regression ``y = X @ coef + noise`` with ``X`` uniform in [-1, 1]."""
    _check("make_linear", n, noise, seed)
    if np.ndim(coef) != 1 or not len(coef) or not np.all(np.isfinite(np.asarray(coef, float))):
        raise ValueError(f"make_linear coef: expected a non-empty list of finite numbers, "
                         f"got {coef!r}")
    rng = _rng(seed)
    coef = np.asarray(coef, dtype=np.float64)
    X = rng.uniform(-1, 1, (n, coef.size))
    y = X @ coef + noise * rng.standard_normal(n)
    return X.astype(np.float32), y.astype(np.float32)


DATASETS = {"xor": make_xor, "moons": make_moons, "circles": make_circles,
            "spirals": make_spirals, "blobs": make_blobs, "linear": make_linear}


def load(name: str, **kwargs):
    """A built-in dataset by name: xor, moons, circles, spirals, blobs, linear."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name](**kwargs)


def train_test_split(X, y, test_size: float = 0.25, seed: int | None = 0):
    """Shuffle and split host arrays.

    Returns
    -------
    X_train, X_test, y_train, y_test
    """
    from ..backend.random import check_seed

    check_seed(seed, "train_test_split seed")
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"train_test_split: X has {len(X)} rows but y has {len(y)}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size: expected a fraction in (0, 1), got {test_size!r}")
    perm = _rng(seed).permutation(len(X))
    n_test = max(1, int(round(len(X) * test_size)))
    test, train = perm[:n_test], perm[n_test:]
    return X[train], X[test], y[train], y[test]
