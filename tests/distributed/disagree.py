"""Ranks that call ``fit`` differently (tests/test_distributed.py).

Run under ``mpiexec -n 2 python -m mpi4py disagree.py OUT``: each case makes one rank's
call differ from the others'; every rank must refuse it, at once and before changing
anything, and the next case must start in step. Each rank writes, per case, a line
``case: <exception type>: <message> | unchanged=<bool> checksum=<sum of parameters>`` to
``OUT/refusals-rank<R>.txt``.
"""

import os
import sys

import numpy as np

import gpunn as gn

sys.path.insert(0, os.path.dirname(__file__))
from cases import data, model  # noqa: E402


class SetLr(gn.callbacks.Callback):
    """Sets the learning rate at the start of an epoch (to a rank's own value)."""

    def __init__(self, epoch, lr):
        self.epoch, self.lr = epoch, lr

    def on_epoch_begin(self, model, epoch):
        if epoch == self.epoch:
            model.optimizer.lr = self.lr


def _stopper(patience):
    return gn.callbacks.EarlyStopping(monitor="loss", patience=patience)


#: name -> (what rank 0 passes, what rank 1 passes, what the refusal names): the
#: arguments of fit that differ from the shared call's.
CASES = {
    "epochs": ({"epochs": 2}, {"epochs": 3}, "ranks disagree on epochs: rank 0 has 2, "
                                             "rank 1 has 3"),
    "batch_size": ({}, {"batch_size": 64}, "ranks disagree on batch_size: rank 0 has 32, "
                                           "rank 1 has 64"),
    "rows": ({}, {"rows": slice(0, 160)}, "ranks disagree on X"),
    "shard": ({"rows": slice(0, 100)}, {"rows": slice(100, 200)}, "ranks disagree on X"),
    "targets": ({}, {"flip": True}, "ranks disagree on y"),
    "lr": ({}, {"optimizer": lambda: gn.optim.Adam(lr=1e-3)},
           "ranks disagree on optimizer lr: rank 0 has 0.01, rank 1 has 0.001"),
    "optimizer": ({}, {"optimizer": lambda: gn.optim.SGD(lr=1e-2)},
                  "ranks disagree on optimizer"),
    "loss": ({}, {"loss": lambda: gn.losses.CategoricalCrossEntropy(eps=1e-5)},
             "ranks disagree on loss eps: rank 0 has 1e-07, rank 1 has 1e-05"),
    "validation": ({"validation": True}, {}, "ranks disagree on validation_data"),
    "shuffle": ({}, {"shuffle": False}, "ranks disagree on shuffle"),
    "seed": ({}, {"seed": 4}, "ranks disagree on seed: rank 0 has 3, rank 1 has 4"),
    "class_weight": ({}, {"class_weight": "balanced"}, "ranks disagree on sample weights"),
    "early_stopping": ({"callbacks": lambda: [_stopper(2)]},
                       {"callbacks": lambda: [_stopper(3)]}, "ranks disagree on callbacks"),
    "architecture": ({}, {"hidden": 8}, "ranks disagree on model"),
    # One rank's own checks refuse its call: it raises its error, the others say which.
    "refused": ({}, {"epochs": 0}, "rank 1 of 2 refused fit: epochs:"),
    # A callback changes the learning rate on one rank between epochs: refused at the
    # start of that epoch, before its first step.
    "lr_mid_training": ({"callbacks": lambda: [SetLr(2, 5e-3)]},
                        {"callbacks": lambda: [SetLr(2, 6e-3)]},
                        "ranks disagree on optimizer"),
}


def call(name, rank):
    """One case's fit on this rank: ``(exception or None, parameters unchanged, their
    sum)``."""
    mine = CASES[name][rank]
    X, y = data(200)
    rows = mine.get("rows", slice(None))
    X, y = X[rows], y[rows]
    if mine.get("flip"):
        y = 2 - y
    net = model(0.0)
    if "hidden" in mine:
        net = gn.Sequential([gn.Dense(5, mine["hidden"], activation="tanh"),
                             gn.Dense(mine["hidden"], 3, activation="softmax")],
                            device="cpu", dtype="float64", seed=0)
    before = _params(net)
    fit = {"epochs": 2, "batch_size": 32, "seed": 3, "shuffle": True, "verbose": 0,
           "loss": "categorical_crossentropy"}
    fit.update({k: mine[k] for k in ("epochs", "batch_size", "seed", "shuffle",
                                     "class_weight") if k in mine})
    if "loss" in mine:
        fit["loss"] = mine["loss"]()
    fit["optimizer"] = mine.get("optimizer", lambda: gn.optim.Adam(lr=1e-2))()
    fit["callbacks"] = mine.get("callbacks", list)()
    if mine.get("validation"):
        fit["validation_data"] = (X[:40], y[:40])
    try:
        net.fit(X, y, **fit)
    except Exception as exc:  # noqa: BLE001 - what each rank raised is the result
        return exc, np.array_equal(before, _params(net)), float(_params(net).sum())
    return None, False, float(_params(net).sum())


def _params(net):
    return np.concatenate([gn.to_numpy(p).ravel() for p in net.parameters()])


if __name__ == "__main__":
    out = sys.argv[1]
    world = gn.distributed.init()
    assert world.size == 2, "launch with mpiexec -n 2"
    for case in (sys.argv[2:] or CASES):
        exc, unchanged, checksum = call(case, world.rank)
        said = "none" if exc is None else f"{type(exc).__name__}: {exc}"
        with open(os.path.join(out, f"refusals-rank{world.rank}.txt"), "a") as fh:
            fh.write(f"{case}: {' '.join(said.split())} | unchanged={unchanged} "
                     f"checksum={checksum:.15e}\n")
