"""Run under ``mpiexec -n P python -m mpi4py``: the training cases of
tests/test_distributed.py, each rank writing its final parameters and history to
``OUT/<case>-rank<r>.npz`` for the test to compare with single-process training."""

import os
import sys

import numpy as np

import gpunn as gn

sys.path.insert(0, os.path.dirname(__file__))
from cases import CASES, train  # noqa: E402

out = sys.argv[1]
world = gn.distributed.init()
assert world.size > 1, "launch with mpiexec -n 2 or more"
for name in (sys.argv[2:] or CASES):
    model, hist = train(name)
    params = gn.to_numpy(model.store.flat[0])
    np.savez(os.path.join(out, f"{name}-rank{world.rank}.npz"), params=params,
             loss=np.array(hist.history["loss"]), epochs=np.array(hist.epoch),
             **{k: np.array(hist.history[k]) for k in ("f1", "auc", "val_f1", "val_auc")})
