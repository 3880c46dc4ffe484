"""BatchNorm on several ranks: the cases trained both by one process and, run as a script
under ``mpiexec -n P python -m mpi4py``, by P ranks, each writing its parameters, running
statistics and losses to ``OUT/<case>-rank<r>.npz`` (tests/test_layers_norm.py compares)."""

import os
import sys

import numpy as np

import gpunn as gn

#: name -> (rows, batch size, sample weights, sync)
CASES = {
    "sync": (96, 32, False, True),
    # 65 rows at batch 32: a last batch of 1 row, so one rank runs a weight-0 stand-in
    # (the second BatchNorm, on one value per channel, is left out: one process refuses
    # such a batch too).
    "sync-tail": (65, 32, False, True),
    "sync-weighted": (96, 32, True, True),
    "local": (96, 32, False, False),
}


def data(rows: int):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, 1, 8)) * 2 + 1
    y = (X[:, 0, :4].sum(axis=1) > X[:, 0, 4:].sum(axis=1)).astype(np.int64)
    return X, y


def train(name: str):
    rows, batch, weighted, sync = CASES[name]
    X, y = data(rows)
    layers = [gn.Conv1D(1, 3, 3), gn.BatchNorm(3, sync=sync), gn.ReLU(), gn.Flatten(),
              gn.Dense(18, 8)]
    layers += [] if name.endswith("tail") else [gn.BatchNorm(8, sync=sync)]
    layers += [gn.Tanh(), gn.Dense(8, 2, activation="softmax")]
    model = gn.Sequential(layers, device="cpu", dtype="float64", seed=0)
    weights = 1.0 + np.arange(rows) % 3 if weighted else None
    hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.SGD(lr=0.1, momentum=0.9),
                     epochs=2, batch_size=batch, verbose=0, seed=1, sample_weight=weights)
    return model, hist


def arrays(model) -> np.ndarray:
    """Every parameter and buffer, flat."""
    return np.concatenate([gn.to_numpy(a).ravel() for a in
                           model.store.parameters() + model.store.buffers()])


if __name__ == "__main__":
    out = sys.argv[1]
    world = gn.distributed.init()
    assert world.size > 1, "launch with mpiexec -n 2 or more"
    for name in CASES:
        model, hist = train(name)
        np.savez(os.path.join(out, f"{name}-rank{world.rank}.npz"), arrays=arrays(model),
                 loss=np.array(hist.history["loss"]))
