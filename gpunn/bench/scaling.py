"""``gpunn bench --scaling``: time per row and peak memory of ``fit`` against the number of
rows (784 features, 784-128-10 ReLU/softmax, batch 256, Adam, shuffling on).

Memory is NumPy's allocations during ``fit`` (tracemalloc) plus the dataset itself, over
what training needs: the dataset, parameters, gradients, Adam's two moments and one batch
of layer inputs and outputs. Time per row is the fastest of three epochs that follow a
first one back to back, and its median over ``--repeats`` rounds that go through every
row count in turn (alternating the order), so a slow moment of a shared machine shows as a
spread, not as a trend.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc

import numpy as np

from ..atomic import write_text
from ..callbacks import Callback

WIDTHS, BATCH = [784, 128, 10], 256


class _EpochTimer(Callback):
    """Wall seconds of each epoch (from its start to its end)."""

    order = -1000  # before the other callbacks, so their work is not timed

    def __init__(self):
        self.seconds = []

    def on_epoch_begin(self, model, epoch):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, model, epoch, logs):
        self.seconds.append(time.perf_counter() - self._t0)


def measure_rows(dev, n_rows: int) -> dict:
    """One row count: µs per row, peak/needed memory ratio and its parts (MiB)."""
    import gpunn as gn

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_rows, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[-1], n_rows)
    model = gn.Sequential([gn.Dense(784, 128, activation="relu"),
                           gn.Dense(128, 10, activation="softmax")], device=dev.name, seed=0)
    timer = _EpochTimer()
    # Warm-up outside the measurement: compiled kernels (Numba) and imports allocate once.
    warm = gn.Sequential([gn.Dense(784, 8), gn.Dense(8, 10, activation="softmax")],
                         device=dev.name, seed=0)
    warm.fit(X[:BATCH], y[:BATCH], loss="cross_entropy", epochs=1, verbose=0)
    tracemalloc.start()
    model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=1e-3), epochs=4,
              batch_size=BATCH, verbose=0, callbacks=[timer])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The fastest of the back-to-back epochs after the first: this shared machine's load
    # only ever slows an epoch down.
    seconds = min(timer.seconds[1:])
    params = model.count_params()
    dataset = X.nbytes + y.nbytes
    needed = dataset + 4 * params * 4 + BATCH * sum(WIDTHS) * 2 * 4
    return {"rows": n_rows, "us_per_row": 1e6 * seconds / n_rows,
            "peak_mib": (dataset + peak) / 2**20, "needed_mib": needed / 2**20,
            "dataset_mib": dataset / 2**20, "memory_ratio": (dataset + peak) / needed}


def run_scaling(args, dev) -> int:
    if dev.kind != "cpu":
        print("gpunn bench --scaling: measures host memory; use --device cpu",
              file=sys.stderr)
        return 2
    try:
        counts = [int(v) for v in args.scaling_rows.split(",") if v]
    except ValueError:
        counts = []
    if not counts or min(counts) < BATCH:
        print(f"gpunn bench: --scaling-rows: expected integers >= {BATCH}, got "
              f"{args.scaling_rows!r}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print(f"gpunn bench: --repeats: expected an integer >= 1, got {args.repeats}",
              file=sys.stderr)
        return 2
    rounds = {n: [] for n in counts}
    for k in range(args.repeats):
        for n in (counts if k % 2 == 0 else counts[::-1]):
            r = measure_rows(dev, n)
            rounds[n].append(r)
            print(f"  round {k + 1}: {n:>9,} rows  {r['us_per_row']:7.2f} us/row  peak "
                  f"{r['peak_mib']:9.1f} MiB  needed {r['needed_mib']:9.1f} MiB  ratio "
                  f"{r['memory_ratio']:.3f}", flush=True)
    results = []
    for n in counts:
        times = [r["us_per_row"] for r in rounds[n]]
        results.append(dict(max(rounds[n], key=lambda r: r["memory_ratio"]),
                            us_per_row=float(np.median(times)), us_per_row_min=min(times),
                            us_per_row_max=max(times), rounds=len(times)))
    base = results[0]["us_per_row"]
    lines = ["| rows | µs/row (median) | range over rounds | vs first | peak MiB | "
             "needed MiB | peak / needed (largest) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['rows']:,} | {r['us_per_row']:.2f} | {r['us_per_row_min']:.2f}-"
              f"{r['us_per_row_max']:.2f} | {r['us_per_row'] / base:.2f} | "
              f"{r['peak_mib']:,.1f} | {r['needed_mib']:,.1f} | {r['memory_ratio']:.3f} |"
              for r in results]
    table = "\n".join(lines)
    print()
    print(table)
    if args.json:
        write_text(args.json, json.dumps({"command": " ".join(sys.argv), "widths": WIDTHS,
                                          "batch": BATCH, "rows": results}, indent=2))
    if args.markdown:
        write_text(args.markdown, table + "\n")
    return 0
