"""Run under ``mpiexec -n 2 python -m mpi4py control.py OUT MODE``: collective decisions
(tests/test_distributed.py). Each rank prints ``rank R: ...`` lines the test reads."""

import os
import signal
import sys

import numpy as np

import gpunn as gn

sys.path.insert(0, os.path.dirname(__file__))
from cases import data, train  # noqa: E402

out, mode = sys.argv[1], sys.argv[2]
rank = gn.distributed.init().rank


class OnRank(gn.callbacks.Callback):
    """Does ``act`` on one rank only, at one epoch (and batch)."""

    def __init__(self, act, epoch, batch=None, on=1):
        self.act, self.epoch, self.batch, self.on, self.now = act, epoch, batch, on, 0

    def on_epoch_begin(self, model, epoch):
        self.now = epoch

    def on_batch_end(self, model, batch, rows, loss_sum):
        if rank == self.on and self.batch == batch and self.now == self.epoch:
            self.act(model)

    def on_epoch_end(self, model, epoch, logs):
        if rank == self.on and self.batch is None and epoch == self.epoch:
            self.act(model)


def report(what, net=None, hist=None, text=None):
    """One line in OUT/report-rank<R>.txt (the ranks' stdout may interleave)."""
    if text is None:
        params = gn.to_numpy(net.store.flat[0])
        text = f"epochs {len(hist.epoch)} checksum {params.sum():.15e}"
    with open(os.path.join(out, f"report-rank{rank}.txt"), "a") as fh:
        fh.write(f"{what}: {text}\n")


if mode == "decisions":
    def stop(m):
        m.stop_training = True

    report("stop", *train("adam", epochs=5, callbacks=[OnRank(stop, epoch=2)]))

    def press(m):
        os.kill(os.getpid(), signal.SIGINT)

    report("interrupt", *train("adam", epochs=5, callbacks=[OnRank(press, 2, batch=3)]))
    X, y = data(200)
    try:
        linear = gn.Sequential([gn.Dense(5, 1)], device="cpu", dtype="float64", seed=0)
        linear.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e60), epochs=3,
                   batch_size=32, verbose=0, seed=3)
    except gn.TrainingDiverged as exc:
        report("diverged", text=str(exc))

    class Poison(gn.callbacks.Callback):
        """NaN weights on every rank after epoch 3's second step: the loss diverges."""

        def on_epoch_begin(self, model, epoch):
            self.epoch = epoch

        def on_batch_end(self, model, batch, rows, loss_sum):
            if self.epoch == 3 and batch == 1:
                model.parameters()[0][...] = float("nan")

    # The snapshot cadence differs by rank (as GPUs with different free memory make it):
    # the ranks must still roll back to the same epoch.
    from gpunn.training import recovery

    own = recovery.Snapshot.epochs_between
    recovery.Snapshot.epochs_between = lambda self, steps: 1 if rank == 0 else 3
    try:
        report("rollback", *train("adam", epochs=4, on_divergence="stop",
                                  callbacks=[Poison()]))
    finally:
        recovery.Snapshot.epochs_between = own
    net, hist = train("adam", epochs=4, resume_from=os.path.join(out, "single.npz"),
                      optimizer=None)
    report("resumed", net, hist)
    np.save(os.path.join(out, f"resumed-rank{rank}.npy"), gn.to_numpy(net.store.flat[0]))
    net, hist = train("sgd", verbose=1, callbacks=[
        gn.callbacks.ModelCheckpoint(os.path.join(out, f"ckpt-{rank}-{{epoch}}.npz"))])
    net.save(os.path.join(out, f"model-{rank}.npz"))
elif mode == "die":
    def fail(m):
        raise RuntimeError("rank 1 fails on purpose")

    train("adam", epochs=50, callbacks=[OnRank(fail, epoch=2)])
elif mode == "exit":
    train("adam", epochs=50, callbacks=[OnRank(lambda m: os._exit(3), epoch=2)])
elif mode == "caught":
    def fail(m):
        raise RuntimeError("rank 1 fails on purpose")

    try:  # the error is caught on rank 1: rank 0 must not wait for it for ever
        train("adam", epochs=50, callbacks=[OnRank(fail, epoch=2)])
    except RuntimeError:
        pass
elif mode == "absent":
    if rank == 0:  # rank 1 never calls fit (it ends at once)
        train("adam", epochs=3)
