"""Data-parallel throughput on this machine: 1 rank against 2 ranks (gpunn.distributed).

    python bench/distributed.py [--rows 32768] [--batch 512] [--epochs 4] [--out FILE.md]

runs three configurations of the same training (a 64-512-512-10 MLP, float32, Adam, the
global batch ``--batch``) through ``mpiexec``: 1 rank with 1 BLAS thread, 1 rank with 2
threads, and 2 ranks with 1 thread each, and prints samples/s (the first epoch, warm-up,
left out). A benchmark, not a test: the figures depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOAD_BEFORE = "?"

def worker(rows: int, batch: int, epochs: int) -> None:
    """One rank's part (run under mpiexec): prints one JSON line from rank 0."""
    import numpy as np

    import gpunn as gn

    world = gn.distributed.init()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=rows)
    model = gn.Sequential([gn.Dense(64, 512, activation="relu"),
                           gn.Dense(512, 512, activation="relu"),
                           gn.Dense(512, 10, activation="softmax")], device="cpu", seed=0)

    class Clock(gn.callbacks.Callback):
        def __init__(self):
            self.times = []

        def on_epoch_end(self, model, epoch, logs):
            self.times.append(time.perf_counter())

    clock = Clock()
    model.fit(X, y, loss="categorical_crossentropy", epochs=epochs, batch_size=batch,
              verbose=0, seed=0, callbacks=[clock])
    seconds = clock.times[-1] - clock.times[0]
    if world.rank == 0:
        print(json.dumps({"ranks": world.size, "samples_per_s": rows * (epochs - 1) / seconds,
                          "params": model.count_params()}), flush=True)


def run(ranks: int, threads: int, args) -> dict:
    here = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(here) if here.exists() else shutil.which("mpiexec")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "MPIR_CVAR_POLLS_BEFORE_YIELD": "10"}
    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__, "--worker",
           "--rows", str(args.rows), "--batch", str(args.batch), "--epochs", str(args.epochs)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "threads_per_rank": threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32768)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--out", help="also write a Markdown table here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.rows, args.batch, args.epochs)
        return 0
    global LOAD_BEFORE
    LOAD_BEFORE = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    for ranks, threads in ((1, 1), (1, 2), (2, 1)):
        best = max((run(ranks, threads, args) for _ in range(args.repeat)),
                   key=lambda r: r["samples_per_s"])
        rows.append(best)
        print(f"{ranks} rank(s) x {threads} BLAS thread(s): "
              f"{best['samples_per_s']:,.0f} samples/s", flush=True)
    if args.out:
        lines = [f"# Data-parallel throughput, {platform.node() or 'this machine'}",
                 "", f"Command: `python bench/distributed.py --rows {args.rows} --batch "
                 f"{args.batch} --epochs {args.epochs} --repeat {args.repeat} --out "
                 f"{args.out}`", "", f"{os.cpu_count()} CPU cores, Python "
                 f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; MLP 64-512-512-10 "
                 f"({rows[0]['params']:,} parameters), float32, Adam, global batch "
                 f"{args.batch}; best of {args.repeat}, first epoch left out; load "
                 f"average before the run {LOAD_BEFORE} (the machine is shared).", "",
                 "| ranks | BLAS threads per rank | samples/s |", "|---|---|---|"]
        lines += [f"| {r['ranks']} | {r['threads_per_rank']} | {r['samples_per_s']:,.0f} |"
                  for r in rows]
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
